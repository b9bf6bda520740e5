"""Callback notifications against a real Redis and real HTTP receivers on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from devcmd.clock import now_ms
from devcmd.domain import auth, commands, delivery, notifications, revocations, southbound
from devcmd.embedded import free_port
from devcmd.store import keys
from tests import backends
from tests.integration.conftest import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.backends(*backends.CORE, "cluster")]
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {}}


@pytest.fixture
def sender():
    pool = delivery.Sender(concurrency=8)
    yield pool
    pool.close()


def queued_refs(svc) -> list[list[str]]:
    """The notification references published to the `callbacks` Celery queue, oldest first."""
    refs = []
    for raw in reversed(svc.broker_redis.lrange("callbacks", 0, -1)):
        message = json.loads(raw)
        if message["headers"]["task"] == "devcmd.notifications.deliver":
            args, _, _ = json.loads(base64.b64decode(message["body"]))
            refs += args[0]
    return refs


def deliver_queued(svc) -> dict[str, int]:
    """Deliver every queued notification reference as one delivery task would; its counts."""
    sender = delivery.Sender(concurrency=2)
    try:
        return delivery.deliver(svc, sender, queued_refs(svc))
    finally:
        sender.close()


def cancelled_with_callbacks(svc, app_id, device_id, url, count) -> list[str]:
    ids = [
        commands.create(svc, app_id, device_id, COMMAND, {"callbackUrl": url})["commandId"]
        for _ in range(count)
    ]
    task_id = revocations.open_task(svc, app_id, device_id)["taskId"]
    while not revocations.sweep(svc, app_id, device_id, task_id).done:
        pass
    notifications.flush(svc, app_id, device_id)
    return ids


def record(svc, app_id, command_id, status="CANCELED") -> dict:
    (found,) = [r for r in notifications.history(svc, app_id, command_id) if r["status"] == status]
    return found


def test_flush_hands_every_event_over_once_then_empties_the_outbox(svc, app_id, device_id):
    ids = cancelled_with_callbacks(svc, app_id, device_id, "http://127.0.0.1:9/a", 30)
    refs = queued_refs(svc)
    assert sorted(r[2] for r in refs) == sorted(f"msg_{c}_CANCELED" for c in ids)
    assert svc.redis.llen(keys.outbox(app_id, device_id)) == 0
    assert notifications.flush(svc, app_id, device_id) is True
    assert len(queued_refs(svc)) == len(refs)
    assert record(svc, app_id, ids[0])["state"] == "pending"


def test_flush_waits_while_another_process_drains(svc, app_id, device_id):
    ids = [
        commands.create(svc, app_id, device_id, COMMAND, {"callbackUrl": "http://127.0.0.1:9/"})
        for _ in range(2)
    ]
    token = svc.outbox.lock(app_id, device_id, 5000)
    commands.cancel(svc, app_id, ids[0]["commandId"])
    assert notifications.flush(svc, app_id, device_id) is False
    assert svc.redis.llen(keys.outbox(app_id, device_id)) == 1
    svc.outbox.unlock(app_id, device_id, token)
    assert notifications.flush(svc, app_id, device_id) is True


def test_a_drainer_whose_lock_expired_leaves_the_new_holders_lock(svc, app_id, device_id):
    stale = svc.outbox.lock(app_id, device_id, 5000)
    svc.redis.delete(keys.outbox_lock(app_id, device_id))  # its TTL ran out
    holder = svc.outbox.lock(app_id, device_id, 5000)
    svc.outbox.unlock(app_id, device_id, stale)
    assert svc.redis.get(keys.outbox_lock(app_id, device_id)) == holder
    svc.outbox.unlock(app_id, device_id, holder)
    assert svc.redis.exists(keys.outbox_lock(app_id, device_id)) == 0


def test_a_drainer_that_lost_its_lock_drops_nothing(svc, app_id, device_id):
    """A round that stalled past the drain lock (or a drainer presumed dead) must not trim
    events that the lock's new holder is draining."""
    commands.create(svc, app_id, device_id, COMMAND, {"callbackUrl": "http://127.0.0.1:9/"})
    command = commands.create(
        svc, app_id, device_id, COMMAND, {"callbackUrl": "http://127.0.0.1:9/"}
    )
    commands.cancel(svc, app_id, command["commandId"])
    stale = svc.outbox.lock(app_id, device_id, 5000)
    svc.redis.delete(keys.outbox_lock(app_id, device_id))  # its TTL ran out
    holder = svc.outbox.lock(app_id, device_id, 5000)
    assert svc.outbox.drop(app_id, device_id, 1, stale, 5000) == -1
    assert svc.redis.llen(keys.outbox(app_id, device_id)) == 1
    assert svc.outbox.drop(app_id, device_id, 1, holder, 60_000) == 0
    assert 5000 < svc.redis.pttl(keys.outbox_lock(app_id, device_id)) <= 60_000  # renewed


def test_a_killed_drainers_lock_blocks_the_device_for_at_most_lock_ms(svc, app_id, device_id):
    command = commands.create(
        svc, app_id, device_id, COMMAND, {"callbackUrl": "http://127.0.0.1:9/"}
    )
    svc.outbox.lock(app_id, device_id, notifications.LOCK_MS)  # taken, never released
    commands.cancel(svc, app_id, command["commandId"])
    assert notifications.flush(svc, app_id, device_id) is False
    assert 0 < svc.redis.pttl(keys.outbox_lock(app_id, device_id)) <= notifications.LOCK_MS
    svc.redis.pexpire(keys.outbox_lock(app_id, device_id), 1)
    time.sleep(0.01)
    assert notifications.flush(svc, app_id, device_id) is True
    assert record(svc, app_id, command["commandId"])["state"] == "pending"


def test_commands_without_callback_are_not_notified(svc, app_id, device_id):
    with_url = cancelled_with_callbacks(svc, app_id, device_id, "http://127.0.0.1:9/a", 3)
    cancelled_with_callbacks(svc, app_id, device_id, None, 4)
    assert sorted(r[2] for r in queued_refs(svc)) == sorted(f"msg_{c}_CANCELED" for c in with_url)


def test_deliver_posts_the_oceanconnect_body(svc, app_id, device_id, receiver, sender):
    ids = cancelled_with_callbacks(svc, app_id, device_id, receiver.url, 3)
    assert delivery.deliver(svc, sender, queued_refs(svc)) == {"postponed": 0, "delivered": 3}
    bodies = sorted((body for _, body in receiver.received), key=lambda b: b["commandId"])
    assert [b["commandId"] for b in bodies] == sorted(ids)
    assert bodies[0] == {
        "deviceId": device_id,
        "commandId": bodies[0]["commandId"],
        "result": {"resultCode": "CANCELED", "resultDetail": None},
    }
    history = record(svc, app_id, ids[0])
    assert history["state"] == "delivered"
    assert history["attempts"][0]["status"] == 204
    assert history["attempts"][0]["latencyMs"] >= 0


def test_receivers_verify_signatures_with_the_standardwebhooks_package(
    svc, app_id, device_id, receiver, sender
):
    cancelled_with_callbacks(svc, app_id, device_id, receiver.url, 2)
    delivery.deliver(svc, sender, queued_refs(svc))
    verifier = Webhook(svc.apps.get(app_id)["webhookSecret"])
    stranger = Webhook(auth.create_application(svc, app_id="app-b")["webhookSecret"])
    assert len(receiver.received) == 2
    for headers, body in receiver.received:
        lowered = {k.lower(): v for k, v in headers.items()}
        raw = receiver.raw[lowered["webhook-id"]]
        assert verifier.verify(raw, lowered) == body
        with pytest.raises(WebhookVerificationError):
            stranger.verify(raw, lowered)


def test_failures_retry_on_schedule_and_410_stops(svc, app_id, device_id, receiver, sender):
    svc.config = svc.config.with_(callback_retry_schedule="0.05,0.05")
    receiver.statuses[:] = [500, 410, 204]
    cancelled_with_callbacks(svc, app_id, device_id, receiver.url, 3)
    counts = delivery.deliver(svc, sender, queued_refs(svc))
    assert (counts["retrying"], counts["stopped"], counts["delivered"]) == (1, 1, 1)
    time.sleep(0.1)
    assert notifications.retry_due(svc) == 1
    retried = queued_refs(svc)[-1:]
    assert delivery.deliver(svc, sender, retried) == {"postponed": 0, "delivered": 1}
    assert len(receiver.received) == 4
    assert len({h["webhook-id"] for h, _ in receiver.received}) == 3


def test_a_receiver_rejecting_a_delivery_with_a_4xx_is_not_retried_but_429_is(
    svc, app_id, device_id, receiver, sender
):
    """A 400 (say, a signature the receiver cannot verify) would be answered every time: the
    notification fails at once, kept for `notifications retry --failed`; a 429 is retried."""
    svc.config = svc.config.with_(callback_retry_schedule="0.05,0.05")
    receiver.statuses[:] = [400, 429]
    rejected, throttled = cancelled_with_callbacks(svc, app_id, device_id, receiver.url, 2)
    counts = delivery.deliver(svc, sender, queued_refs(svc))
    assert (counts["failed"], counts["retrying"]) == (1, 1)
    states = {cid: record(svc, app_id, cid)["state"] for cid in (rejected, throttled)}
    assert sorted(states.values()) == ["failed", "pending"]
    time.sleep(0.1)
    assert notifications.retry_due(svc) == 1  # only the 429 comes back
    assert notifications.retry_failed(svc) == 1  # the 400 waits for an operator


def test_after_the_last_attempt_the_notification_is_kept_as_failed(svc, app_id, device_id, sender):
    svc.config = svc.config.with_(callback_retry_schedule="0.01")
    dead = f"http://127.0.0.1:{free_port()}/cb"
    (command_id,) = cancelled_with_callbacks(svc, app_id, device_id, dead, 1)
    delivery.deliver(svc, sender, queued_refs(svc))
    time.sleep(0.05)
    notifications.retry_due(svc)
    assert delivery.deliver(svc, sender, queued_refs(svc)[-1:])["failed"] == 1
    kept = record(svc, app_id, command_id)
    assert (kept["state"], kept["attemptCount"], kept["nextAttempt"]) == ("failed", 2, None)
    assert all(a["error"] for a in kept["attempts"])
    assert notifications.retry_failed(svc, since_ms=now_ms() + 60_000) == 0
    assert notifications.retry_failed(svc) == 1
    assert notifications.retry_failed(svc) == 0
    revived = record(svc, app_id, command_id)
    assert (revived["state"], revived["attemptCount"], len(revived["attempts"])) == (
        "pending",
        0,
        2,
    )
    assert notifications.retry_due(svc) == 1


def test_a_dead_receiver_opens_its_breaker_and_costs_no_more_attempts(
    svc, app_id, device_id, sender
):
    dead = f"http://127.0.0.1:{free_port()}/cb"
    cancelled_with_callbacks(svc, app_id, device_id, dead, 40)
    refs = queued_refs(svc)
    first = delivery.deliver(svc, sender, refs[:10])
    assert first["retrying"] + first["postponed"] == 10
    assert first["retrying"] >= svc.config.callback_breaker_failures  # later ones saw it open
    second = delivery.deliver(svc, sender, refs[10:])
    assert second == {"postponed": 30}
    breaker = svc.notifications.breaker(delivery.origin(dead))
    assert breaker.failures >= svc.config.callback_breaker_failures
    assert breaker.open_until > now_ms()


def test_a_hanging_receiver_does_not_delay_another(svc, app_id, device_id, receiver, sender):
    """One task's notifications to a receiver that never answers and to a healthy one: every
    healthy delivery is done before the hanging ones time out (events of one run compared, not
    a wall-clock bound: a loaded machine slows both)."""
    svc.config = svc.config.with_(callback_timeout=3.0)
    hanging = _HangingReceiver()
    slow = cancelled_with_callbacks(svc, app_id, device_id, hanging.url, 4)
    fine = cancelled_with_callbacks(svc, app_id, device_id, receiver.url, 20)
    started = time.monotonic()
    done: dict[str, float] = {}
    receiver.on_post = lambda body: done.setdefault(body["commandId"], time.monotonic())
    counts = delivery.deliver(svc, sender, queued_refs(svc))
    returned = time.monotonic()  # after the hanging receiver's requests timed out
    hanging.close()
    assert returned - started >= 3.0
    assert counts["delivered"] == 20
    assert counts["retrying"] == 4
    assert sorted(done) == sorted(fine)
    assert max(done.values()) < started + 3.0  # before the hanging receiver's timeout
    assert {record(svc, app_id, c)["state"] for c in slow} == {"pending"}


def test_notifications_of_one_command_arrive_in_status_order(
    svc, app_id, device_id, receiver, sender
):
    svc.config = svc.config.with_(callback_retry_schedule="0.05")
    url = {"callbackUrl": receiver.url}
    command_id = commands.create(svc, app_id, device_id, COMMAND, url)["commandId"]
    southbound.fetch(svc, app_id, device_id, 1)
    southbound.ack(svc, app_id, device_id, command_id)
    southbound.finish(svc, app_id, device_id, command_id, "SUCCESSFUL", None)
    notifications.flush(svc, app_id, device_id)
    receiver.statuses[:] = [503]  # SENT fails once: DELIVERED and SUCCESSFUL must wait for it
    delivery.deliver(svc, sender, queued_refs(svc))
    for _ in range(20):
        time.sleep(0.06)
        if notifications.retry_due(svc):
            delivery.deliver(svc, sender, queued_refs(svc)[-3:])
    codes = [body["result"]["resultCode"] for _, body in receiver.received]
    assert codes == ["SENT", "SENT", "DELIVERED", "SUCCESSFUL"]


def test_refused_targets_are_not_contacted_at_send_time(svc, app_id, device_id, sender):
    cancelled_with_callbacks(svc, app_id, device_id, "http://localhost:9/cb", 1)
    svc.config = svc.config.with_(callback_allow_private=False)
    assert delivery.deliver(svc, sender, queued_refs(svc))["refused"] == 1


class _HangingReceiver:
    """Accepts connections and never answers."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/cb"
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


def test_a_receiver_failing_three_times_then_accepting_gets_everything_once_accepted(
    svc, app_id, device_id, receiver, sender
):
    svc.config = svc.config.with_(callback_retry_schedule="0.02,0.02,0.02,0.02")
    receiver.statuses[:] = [500, 502, 503]
    (command_id,) = cancelled_with_callbacks(svc, app_id, device_id, receiver.url, 1)
    delivery.deliver(svc, sender, queued_refs(svc))
    for _ in range(3):
        time.sleep(0.05)
        assert notifications.retry_due(svc) == 1
        delivery.deliver(svc, sender, queued_refs(svc)[-1:])
    assert [h["webhook-id"] for h, _ in receiver.received] == [f"msg_{command_id}_CANCELED"] * 4
    kept = record(svc, app_id, command_id)
    assert (kept["state"], [a["status"] for a in kept["attempts"]]) == (
        "delivered",
        [500, 502, 503, 204],
    )


def test_a_receiver_that_is_down_then_back_loses_nothing(svc, app_id, device_id, sender):
    svc.config = svc.config.with_(
        callback_retry_schedule="0.05,0.05,0.05", callback_breaker_cooldown=0.05
    )
    port = free_port()
    ids = cancelled_with_callbacks(svc, app_id, device_id, f"http://127.0.0.1:{port}/cb", 12)
    assert delivery.deliver(svc, sender, queued_refs(svc)).get("delivered", 0) == 0
    back = Receiver(port=port)
    threading.Thread(target=back.serve_forever, daemon=True).start()
    try:
        time.sleep(0.15)  # retries and the breaker's cooldown are due
        notifications.retry_due(svc)
        refs = queued_refs(svc)[-12:]
        delivery.deliver(svc, sender, refs)
        assert sorted(body["commandId"] for _, body in back.received) == sorted(ids)
    finally:
        back.shutdown()
        back.server_close()


def test_a_rotated_secret_signs_alongside_the_new_one_during_its_grace(
    svc, app_id, device_id, receiver, sender
):
    old = svc.apps.get(app_id)["webhookSecret"]
    new = auth.rotate_webhook_secret(svc, app_id, grace_seconds=3600)["webhookSecret"]
    cancelled_with_callbacks(svc, app_id, device_id, receiver.url, 1)
    delivery.deliver(svc, sender, queued_refs(svc))
    ((headers, body),) = receiver.received
    lowered = {k.lower(): v for k, v in headers.items()}
    raw = receiver.raw[lowered["webhook-id"]]
    assert len(lowered["webhook-signature"].split()) == 2
    assert Webhook(old).verify(raw, lowered) == body
    assert Webhook(new).verify(raw, lowered) == body
    assert auth.webhook_secrets(svc.apps.get(app_id)) == [new, old]
    auth.rotate_webhook_secret(svc, app_id, grace_seconds=0)
    assert len(auth.webhook_secrets(svc.apps.get(app_id))) == 1


def test_a_delivery_lost_with_its_worker_is_sent_again_when_its_lease_ends(
    svc, app_id, device_id, receiver, sender
):
    """Flush leases every record it hands to a delivery task; if that task never runs (its
    worker was SIGKILLed), retry_due sends them once the lease ends, and a settled record
    leaves the due set."""
    # Long enough that the checks of a lease not yet ended come before its end on a loaded machine.
    lease = 2.0
    svc.config = svc.config.with_(callback_lease_seconds=lease)
    ids = cancelled_with_callbacks(svc, app_id, device_id, receiver.url, 3)
    lost = queued_refs(svc)  # published, never run: the worker died with it
    assert sorted(ref[2] for ref in lost) == sorted(f"msg_{cid}_CANCELED" for cid in ids)
    assert notifications.retry_due(svc) == 0  # leased, not yet due
    time.sleep(lease + 0.1)
    assert notifications.retry_due(svc) == 3
    assert notifications.retry_due(svc) == 0  # claimed once, leased again
    assert delivery.deliver(svc, sender, queued_refs(svc)[len(lost) :])["delivered"] == 3
    assert sorted(b["commandId"] for b in [body for _, body in receiver.received]) == sorted(ids)
    assert svc.health.backlog()["notifications_due"] == 0
    # The lost task's message comes back at last (visibility timeout): nothing is sent twice.
    assert delivery.deliver(svc, sender, lost) == {"postponed": 0}
    assert len([body for _, body in receiver.received]) == 3


def test_records_written_by_a_flush_that_died_before_enqueueing_are_still_sent(
    svc, app_id, device_id, receiver, sender
):
    svc.config = svc.config.with_(callback_lease_seconds=0.1)
    (command_id,) = [
        commands.create(svc, app_id, device_id, COMMAND, {"callbackUrl": receiver.url})["commandId"]
    ]
    commands.cancel(svc, app_id, command_id)
    (event,) = svc.outbox.peek(app_id, device_id, 10)
    # The flush wrote the record, then died before its delivery task was enqueued.
    record_ = {
        "id": f"msg_{command_id}_CANCELED",
        "appId": app_id,
        "deviceId": device_id,
        "commandId": command_id,
        "status": "CANCELED",
        "at": event.at_ms,
        "url": receiver.url,
        "detail": None,
        "state": "pending",
        "attempts": [],
        "attemptCount": 0,
        "nextAttempt": event.at_ms,
    }
    assert svc.notifications.create([record_], now_ms() + 100) == [record_]
    svc.broker_redis.delete("callbacks")
    notifications.flush(svc, app_id, device_id)  # the re-drain finds the record already there
    assert queued_refs(svc) == []
    time.sleep(0.15)
    assert notifications.retry_due(svc) == 1
    assert delivery.deliver(svc, sender, queued_refs(svc))["delivered"] == 1
    assert [b["commandId"] for b in [body for _, body in receiver.received]] == [command_id]
