"""Callback notifications against a real Redis and a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from devcmd.domain import auth, commands, notifications, revocations
from devcmd.embedded import free_port
from devcmd.store import keys

pytestmark = pytest.mark.integration
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {}}


def queued_deliveries(svc) -> list[list[dict]]:
    """The notification batches published to the `callbacks` Celery queue."""
    batches = []
    for raw in svc.redis.lrange("callbacks", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == "devcmd.notifications.deliver":
            args, _, _ = json.loads(base64.b64decode(message["body"]))
            batches.append(args[0])
    return batches


def cancelled_with_callbacks(svc, app_id, device_id, url, count):
    ids = [
        commands.create(svc, app_id, device_id, COMMAND, {"callbackUrl": url})["commandId"]
        for _ in range(count)
    ]
    task_id = revocations.open_task(svc, app_id, device_id)["taskId"]
    while not revocations.sweep(svc, app_id, device_id, task_id).done:
        pass
    return ids


def test_flush_hands_every_event_over_once_then_empties_the_outbox(svc, app_id, device_id):
    ids = cancelled_with_callbacks(svc, app_id, device_id, "http://127.0.0.1:9/a", 30)
    assert notifications.flush(svc, app_id, device_id) is True
    batches = queued_deliveries(svc)
    sent = [n for batch in batches for n in batch]
    assert sorted(n["commandId"] for n in sent) == sorted(ids)
    assert {n["status"] for n in sent} == {"CANCELED"}
    assert svc.redis.llen(keys.outbox(app_id, device_id)) == 0
    assert notifications.flush(svc, app_id, device_id) is True
    assert len(queued_deliveries(svc)) == len(batches)


def test_flush_waits_while_another_process_drains(svc, app_id, device_id):
    cancelled_with_callbacks(svc, app_id, device_id, "http://127.0.0.1:9/a", 2)
    token = svc.outbox.lock(app_id, device_id, 5000)
    assert notifications.flush(svc, app_id, device_id) is False
    assert svc.redis.llen(keys.outbox(app_id, device_id)) == 1
    svc.outbox.unlock(app_id, device_id, token)
    assert notifications.flush(svc, app_id, device_id) is True


def test_commands_without_callback_are_not_notified(svc, app_id, device_id):
    with_url = cancelled_with_callbacks(svc, app_id, device_id, "http://127.0.0.1:9/a", 3)
    cancelled_with_callbacks(svc, app_id, device_id, None, 4)
    notifications.flush(svc, app_id, device_id)
    sent = [n["commandId"] for batch in queued_deliveries(svc) for n in batch]
    assert sorted(sent) == sorted(with_url)


def test_deliver_posts_the_oceanconnect_body(svc, app_id, device_id, receiver):
    ids = cancelled_with_callbacks(svc, app_id, device_id, receiver.url, 3)
    notifications.flush(svc, app_id, device_id)
    (batch,) = queued_deliveries(svc)
    with requests.Session() as session:
        assert notifications.deliver(svc, session, batch) == []
    bodies = [body for _, body in receiver.received]
    assert sorted(b["commandId"] for b in bodies) == sorted(ids)
    assert bodies[0] == {
        "deviceId": device_id,
        "commandId": bodies[0]["commandId"],
        "result": {"resultCode": "CANCELED", "resultDetail": None},
    }
    ids_seen = {headers["webhook-id"] for headers, _ in receiver.received}
    assert ids_seen == {f"msg_{c}_CANCELED" for c in ids}


def test_receivers_verify_signatures_with_the_standardwebhooks_package(
    svc, app_id, device_id, receiver
):
    cancelled_with_callbacks(svc, app_id, device_id, receiver.url, 2)
    notifications.flush(svc, app_id, device_id)
    (batch,) = queued_deliveries(svc)
    with requests.Session() as session:
        notifications.deliver(svc, session, batch)
    verifier = Webhook(svc.apps.get(app_id)["webhookSecret"])
    stranger = Webhook(auth.create_application(svc, app_id="app-b")["webhookSecret"])
    for headers, body in receiver.received:
        lowered = {k.lower(): v for k, v in headers.items()}
        raw = receiver.raw[lowered["webhook-id"]]
        assert verifier.verify(raw, lowered) == body
        with pytest.raises(WebhookVerificationError):
            stranger.verify(raw, lowered)


def test_failures_are_returned_for_retry_and_410_stops(svc, app_id, device_id, receiver):
    receiver.statuses[:] = [500, 410, 204]
    cancelled_with_callbacks(svc, app_id, device_id, receiver.url, 3)
    notifications.flush(svc, app_id, device_id)
    (batch,) = queued_deliveries(svc)
    with requests.Session() as session:
        failed = notifications.deliver(svc, session, batch)
    assert [n["commandId"] for n in failed] == [batch[0]["commandId"]]
    assert len(receiver.received) == 3


def test_a_dead_receiver_costs_one_attempt_per_batch(svc, app_id, device_id):
    dead = f"http://127.0.0.1:{free_port()}/cb"
    cancelled_with_callbacks(svc, app_id, device_id, dead, 40)
    notifications.flush(svc, app_id, device_id)
    (batch,) = queued_deliveries(svc)
    started = time.monotonic()
    with requests.Session() as session:
        failed = notifications.deliver(svc, session, batch)
    assert len(failed) == 40
    assert time.monotonic() - started < svc.config.callback_timeout * 2


def test_backoff_grows_exponentially_with_jitter(svc):
    svc.config = svc.config.with_(callback_backoff_base=5.0)
    for attempt in range(1, 6):
        delay = notifications.backoff(svc, attempt)
        ceiling = 5.0 * 2 ** (attempt - 1)
        assert ceiling / 2 <= delay <= ceiling
