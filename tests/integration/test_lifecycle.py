"""The command lifecycle's timers on a real Redis: expiry, retransmission, TIMEOUT, callbacks."""

from __future__ import annotations

import pytest

from devcmd.clock import now_ms
from devcmd.domain import commands, delivery, notifications, revocations, southbound
from devcmd.store import keys
from devcmd.store.notifications import Event
from tests import backends

pytestmark = [pytest.mark.integration, pytest.mark.backends(*backends.CORE, "cluster")]
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {}}
ACK_MS = 30_000


def status(svc, app_id, command_id) -> str:
    return commands.get(svc, app_id, command_id)["status"]


def fetch(svc, app_id, device_id, now, limit=10) -> list[str]:
    return svc.southbound.fetch(app_id, device_id, now, limit, ACK_MS)[1]


def test_an_undelivered_command_expires_at_its_expire_time(svc, app_id, device_id):
    short = commands.create(svc, app_id, device_id, COMMAND, {"expireTime": 60})["commandId"]
    long = commands.create(svc, app_id, device_id, COMMAND, {"expireTime": 3600})["commandId"]
    now = now_ms()
    svc.southbound.tick(app_id, device_id, now + 59_000, 100)
    assert status(svc, app_id, short) == "PENDING"
    svc.southbound.tick(app_id, device_id, now + 61_000, 100)
    assert (status(svc, app_id, short), status(svc, app_id, long)) == ("EXPIRED", "PENDING")
    assert fetch(svc, app_id, device_id, now + 62_000) == [long]


def test_a_fetch_after_expiry_expires_instead_of_sending(svc, app_id, device_id):
    command_id = commands.create(svc, app_id, device_id, COMMAND, {"expireTime": 1})["commandId"]
    assert fetch(svc, app_id, device_id, now_ms() + 5_000) == []
    assert status(svc, app_id, command_id) == "EXPIRED"


def test_expire_time_zero_is_now_or_never(svc, app_id, device_id):
    taken = commands.create(svc, app_id, device_id, COMMAND, {"expireTime": 0})["commandId"]
    assert fetch(svc, app_id, device_id, now_ms()) == [taken]
    missed = commands.create(svc, app_id, device_id, COMMAND, {"expireTime": 0})["commandId"]
    grace = svc.config.expire_zero_grace_ms
    svc.southbound.tick(app_id, device_id, now_ms() + grace + 1, 100)
    assert status(svc, app_id, missed) == "EXPIRED"


@pytest.mark.parametrize("max_retransmit", [0, 1, 3])
def test_unacknowledged_commands_are_resent_then_time_out(svc, app_id, device_id, max_retransmit):
    options = {"maxRetransmit": max_retransmit}
    command_id = commands.create(svc, app_id, device_id, COMMAND, options)["commandId"]
    behind = commands.create(svc, app_id, device_id, COMMAND, {})["commandId"]
    now = now_ms()
    assert fetch(svc, app_id, device_id, now, limit=1) == [command_id]
    for sends in range(1, max_retransmit + 1):
        now += ACK_MS + 1
        svc.southbound.tick(app_id, device_id, now, 100)
        assert status(svc, app_id, command_id) == "SENT"
        assert fetch(svc, app_id, device_id, now, limit=1) == [command_id]  # queue head
        assert commands.get(svc, app_id, command_id)["issuedTimes"] == sends + 1
    now += ACK_MS + 1
    svc.southbound.tick(app_id, device_id, now, 100)
    assert status(svc, app_id, command_id) == "TIMEOUT"
    assert fetch(svc, app_id, device_id, now) == [behind]


def test_an_ack_in_time_stops_retransmission(svc, app_id, device_id):
    options = {"maxRetransmit": 3}
    command_id = commands.create(svc, app_id, device_id, COMMAND, options)["commandId"]
    now = now_ms()
    fetch(svc, app_id, device_id, now)
    southbound.ack(svc, app_id, device_id, command_id)
    svc.southbound.tick(app_id, device_id, now + 10 * ACK_MS, 100)
    assert status(svc, app_id, command_id) == "DELIVERED"
    assert fetch(svc, app_id, device_id, now + 10 * ACK_MS) == []


def test_every_status_change_is_one_outbox_event(svc, app_id, device_id):
    url = {"callbackUrl": "http://127.0.0.1:9/cb"}
    done = commands.create(svc, app_id, device_id, COMMAND, url)["commandId"]
    expired = commands.create(svc, app_id, device_id, COMMAND, url | {"expireTime": 5})["commandId"]
    cancelled = commands.create(svc, app_id, device_id, COMMAND, url)["commandId"]
    timed_out = commands.create(svc, app_id, device_id, COMMAND, url)["commandId"]
    commands.cancel(svc, app_id, cancelled)
    now = now_ms()
    assert fetch(svc, app_id, device_id, now, limit=1) == [done]
    southbound.ack(svc, app_id, device_id, done)
    southbound.finish(svc, app_id, device_id, done, "FAILED", {"why": "busy"})
    svc.southbound.tick(app_id, device_id, now + 6_000, 100)
    assert fetch(svc, app_id, device_id, now + 6_000) == [timed_out]
    svc.southbound.tick(app_id, device_id, now + 6_000 + ACK_MS + 1, 100)
    raw = svc.redis.lrange(keys.outbox(app_id, device_id), 0, -1)
    changes = sorted((c, e.status) for e in map(Event.parse, raw) for c in e.command_ids)
    assert changes == sorted(
        [
            (done, "SENT"), (done, "DELIVERED"), (done, "FAILED"),
            (expired, "EXPIRED"), (cancelled, "CANCELED"),
            (timed_out, "SENT"), (timed_out, "TIMEOUT"),
        ]
    )  # fmt: skip


def test_a_create_landing_between_a_tick_and_its_reschedule_keeps_its_timer(
    svc, app_id, device_id, monkeypatch
):
    """A tick reschedules its device in the shared index after its script (another slot): a
    create that schedules in between must still be found by the beat when it falls due."""
    first = commands.create(svc, app_id, device_id, COMMAND, {"expireTime": 60})["commandId"]
    timers, racing = svc.southbound.timers, []
    real = timers.redis

    class Interleaved:
        """The real client; the first write to the index is preceded by a create."""

        def __getattr__(self, name):
            attr = getattr(real, name)
            if name not in ("zadd", "zrem") or racing:
                return attr

            def step(*args, **kwargs):
                racing.append("firing")  # the create below writes to the index too
                options = {"expireTime": 120}
                racing.append(commands.create(svc, app_id, device_id, COMMAND, options))
                return attr(*args, **kwargs)

            return step

    now = now_ms()
    monkeypatch.setattr(timers, "redis", Interleaved())
    svc.southbound.tick(app_id, device_id, now + 61_000, 100)
    monkeypatch.undo()
    assert status(svc, app_id, first) == "EXPIRED"
    assert len(racing) == 2
    assert status(svc, app_id, racing[-1]["commandId"]) == "PENDING"
    bucket = keys.bucket(device_id, timers.buckets)
    assert timers.due(bucket, now + 125_000, 100) == [(app_id, device_id)]
    svc.southbound.tick(app_id, device_id, now + 125_000, 100)
    assert status(svc, app_id, racing[-1]["commandId"]) == "EXPIRED"


def test_timers_index_finds_due_devices_without_scanning(svc, app_id, device_id):
    command_id = commands.create(svc, app_id, device_id, COMMAND, {"expireTime": 1})["commandId"]
    bucket = keys.bucket(device_id, svc.config.index_buckets)
    timers = svc.southbound.timers
    assert timers.due(bucket, now_ms(), 10) == []
    assert timers.due(bucket, now_ms() + 2_000, 10) == [(app_id, device_id)]
    others = [b for b in svc.buckets if b != bucket]
    assert all(timers.due(b, now_ms() + 2_000, 10) == [] for b in others)
    svc.southbound.tick(app_id, device_id, now_ms() + 2_000, 100)
    assert status(svc, app_id, command_id) == "EXPIRED"
    assert timers.due(bucket, now_ms() + 10**9, 10) == []


def test_the_beat_tick_runs_due_timers(svc, app_id, device_id):
    svc.config = svc.config.with_(expire_zero_grace_ms=0)
    command_id = commands.create(svc, app_id, device_id, COMMAND, {"expireTime": 0})["commandId"]
    assert southbound.tick(svc) == 1
    assert status(svc, app_id, command_id) == "EXPIRED"


def test_a_sweep_and_a_fetch_racing_never_share_a_command(svc, app_id, device_id):
    scoped = [commands.create(svc, app_id, device_id, COMMAND, {})["commandId"] for _ in range(30)]
    task_id = revocations.open_task(svc, app_id, device_id)["taskId"]
    later = [commands.create(svc, app_id, device_id, COMMAND, {})["commandId"] for _ in range(5)]
    handed = fetch(svc, app_id, device_id, now_ms(), limit=100)
    while not revocations.sweep(svc, app_id, device_id, task_id).done:
        pass
    assert handed == later
    assert {status(svc, app_id, c) for c in scoped} == {"CANCELED"}
    notifications.flush(svc, app_id, device_id)


def test_result_callbacks_carry_the_devices_result_detail(svc, app_id, device_id):
    url = {"callbackUrl": "http://127.0.0.1:9/cb"}
    command_id = commands.create(svc, app_id, device_id, COMMAND, url)["commandId"]
    fetch(svc, app_id, device_id, now_ms())
    southbound.finish(svc, app_id, device_id, command_id, "SUCCESSFUL", {"level": 7})
    notifications.flush(svc, app_id, device_id)
    records = notifications.history(svc, app_id, command_id)
    bodies = {r["status"]: delivery.body(r)["result"] for r in records}
    assert bodies == {
        "SENT": {"resultCode": "SENT", "resultDetail": None},
        "SUCCESSFUL": {"resultCode": "SUCCESSFUL", "resultDetail": {"level": 7}},
    }
