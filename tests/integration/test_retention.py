"""Retention against a real Redis and a real cluster: finished commands, tasks and their
notification records go after their retention with every entry that names them, and queries
stay exact while removal runs."""

from __future__ import annotations

import threading
import time

import pytest

from devcmd import errors
from devcmd.clock import now_ms
from devcmd.domain import (
    commands,
    delivery,
    devices,
    notifications,
    retention,
    revocations,
    southbound,
)
from devcmd.store import keys
from tests import backends
from tests.integration.conftest import Receiver
from tests.integration.test_notifications import deliver_queued, queued_refs

pytestmark = [pytest.mark.integration, pytest.mark.backends(*backends.CORE, "cluster")]
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {"level": 3}}
WINDOW = (0, 2**62)


@pytest.fixture
def short(svc):
    """The services with a one-second command and task retention."""
    svc.config = svc.config.with_(command_retention=1.0, task_retention=1.0)
    return svc


def create(svc, app_id, device_id, count, url=None) -> list[str]:
    options = {"callbackUrl": url}
    return [
        commands.create(svc, app_id, device_id, COMMAND, options)["commandId"] for _ in range(count)
    ]


def deliver_all(svc, app_id, device_id, ids) -> None:
    """Fetch, acknowledge and finish SUCCESSFUL the device's next commands `ids`."""
    sent = southbound.fetch(svc, app_id, device_id, len(ids))
    assert [c["commandId"] for c in sent] == ids
    for command_id in ids:
        southbound.ack(svc, app_id, device_id, command_id)
        southbound.finish(svc, app_id, device_id, command_id, "SUCCESSFUL", {"ok": 1})


def revoke(svc, app_id, device_id) -> str:
    task_id = revocations.open_task(svc, app_id, device_id)["taskId"]
    while not revocations.sweep(svc, app_id, device_id, task_id).done:
        pass
    notifications.flush(svc, app_id, device_id)  # as the workers do: the outbox is drained
    return task_id


def everything(svc) -> str:
    """Every devcmd key with its whole content, a line each, to search ids in (the Celery
    queues, which may share the server, are not devcmd records)."""
    servers = svc.purge.servers().values()
    parts = []
    for server in servers:
        for key in server.scan_iter(match="dc:*", count=1000):
            kind = server.type(key)
            read = {
                "hash": server.hgetall,
                "zset": lambda k, s=server: s.zrange(k, 0, -1),
                "list": lambda k, s=server: s.lrange(k, 0, -1),
                "set": server.smembers,
                "string": server.get,
            }[kind]
            parts.append(f"{key} {read(key)}")
    return "\n".join(parts)


def forget_all(svc, now=None) -> int:
    """Run retention over every bucket until a run removes nothing; returns what went."""
    total = 0
    while removed := sum(retention.forget_due(svc, now=now).values()):
        total += removed
    return total


def test_finished_work_goes_after_its_retention_with_every_entry_naming_it(
    short, app_id, device_id
):
    svc = short
    delivered = create(svc, app_id, device_id, 3)
    deliver_all(svc, app_id, device_id, delivered)
    cancelled = create(svc, app_id, device_id, 2)
    for command_id in cancelled:
        commands.cancel(svc, app_id, command_id)
    swept = create(svc, app_id, device_id, 20)  # sweep_batch is 7: three batches
    task_id = revoke(svc, app_id, device_id)
    old = delivered + cancelled + swept
    time.sleep(1.1)
    # Retention runs as of now: what finished before the sleep is past its 1 s, what follows is
    # not, however long a loaded machine takes over it.
    now = now_ms()
    recent = create(svc, app_id, device_id, 1)
    commands.cancel(svc, app_id, recent[0])
    pending = create(svc, app_id, device_id, 4)

    assert forget_all(svc, now=now) == len(old) + 1  # the commands and the task
    for command_id in old:
        with pytest.raises(errors.CommandNotFound):
            commands.get(svc, app_id, command_id)
    with pytest.raises(errors.TaskNotFound):
        revocations.get(svc, app_id, task_id)
    text = everything(svc)
    assert [line for line in text.splitlines() if any(i in line for i in [*old, task_id])] == []
    total, page = commands.query(svc, app_id, None, *WINDOW, 0, 100)
    assert total == 5
    assert {c["commandId"] for c in page} == set(recent + pending)
    assert commands.query(svc, app_id, device_id, *WINDOW, 0, 100)[0] == 5
    assert commands.query(svc, app_id, None, *WINDOW, 0, 100, ["CANCELED"])[0] == 1
    assert commands.query(svc, app_id, device_id, *WINDOW, 0, 100, ["PENDING"])[0] == 4
    assert devices.get(svc, app_id, device_id)["pendingCount"] == 4
    assert revocations.query(svc, app_id, {"start": 0, "end": 2**62}, 0, 10)[0] == 0
    # What is left still goes when its turn comes.
    later = now_ms() + 1100
    assert forget_all(svc, now=later) == 1
    assert commands.query(svc, app_id, None, *WINDOW, 0, 100)[0] == 4


def test_a_command_whose_callback_is_still_being_sent_is_kept_until_it_settles(
    short, app_id, device_id, receiver
):
    svc = short
    ids = create(svc, app_id, device_id, 2, url=receiver.url)
    for command_id in ids:
        commands.cancel(svc, app_id, command_id)
    later = now_ms() + 5000
    assert forget_all(svc, now=later) == 0  # the events wait in the outbox
    notifications.flush(svc, app_id, device_id)
    assert forget_all(svc, now=later + 10) == 0  # their notifications are being delivered
    assert deliver_queued(svc)["delivered"] == 2
    assert [r["state"] for r in notifications.history(svc, app_id, ids[0])] == ["delivered"]
    assert forget_all(svc, now=later + 20) == 2
    with pytest.raises(errors.CommandNotFound):
        notifications.history(svc, app_id, ids[0])
    text = everything(svc)
    assert [i for i in ids if i in text] == []


def test_user_data_that_reads_like_a_pending_notification_keeps_no_command(
    short, app_id, device_id, receiver
):
    """Whether a callback is still in delivery is its record's own state: user data (the
    device's resultDetail, which the record holds; paras) with {"state": "pending"} at any
    depth keeps no delivered command, while a callback really still pending keeps its own."""
    svc = short
    lookalike = {"state": "pending", "deep": [{"x": {"state": "pending"}}]}
    command = {**COMMAND, "paras": lookalike}
    delivered = commands.create(svc, app_id, device_id, command, {"callbackUrl": receiver.url})
    waiting = create(svc, app_id, device_id, 1, url=receiver.url)[0]
    sent = southbound.fetch(svc, app_id, device_id, 1)
    assert [c["commandId"] for c in sent] == [delivered["commandId"]]
    southbound.ack(svc, app_id, device_id, delivered["commandId"])
    southbound.finish(svc, app_id, device_id, delivered["commandId"], "SUCCESSFUL", lookalike)
    notifications.flush(svc, app_id, device_id)
    assert deliver_queued(svc)["delivered"] == 3
    commands.cancel(svc, app_id, waiting)
    notifications.flush(svc, app_id, device_id)  # queued, never delivered: still pending
    history = notifications.history(svc, app_id, delivered["commandId"])
    assert [r["state"] for r in history] == ["delivered"] * 3
    assert '"state":"pending"' in svc.redis.hget(
        keys.notifications(app_id, device_id), f"msg_{delivered['commandId']}_SUCCESSFUL"
    )
    assert [r["state"] for r in notifications.history(svc, app_id, waiting)] == ["pending"]

    assert forget_all(svc, now=now_ms() + 5000) == 1
    with pytest.raises(errors.CommandNotFound):
        commands.get(svc, app_id, delivered["commandId"])
    assert commands.get(svc, app_id, waiting)["status"] == "CANCELED"
    assert delivered["commandId"] not in everything(svc)


class Crash(Exception):
    """The process running retention dies here."""


def crash(*args, **kwargs):
    raise Crash


@pytest.mark.parametrize("step", ["unlist_commands", "forget_commands"])
def test_a_crash_at_either_removal_step_leaves_counts_exact(
    short, app_id, device_id, monkeypatch, step
):
    svc = short
    ids = create(svc, app_id, device_id, 5)
    for command_id in ids:
        commands.cancel(svc, app_id, command_id)
    later = now_ms() + 5000
    target = svc.retention if step == "unlist_commands" else svc.scripts
    with monkeypatch.context() as patched:
        patched.setattr(target, step, crash)
        with pytest.raises(Crash):
            retention.forget_due(svc, now=later)
    for device in (None, device_id):  # what each listing counts, it shows
        total, page = commands.query(svc, app_id, device, *WINDOW, 0, 100)
        assert total == len(page)
    # A crash after the application step (the command map) leaves commands that the listings
    # still show (layout 3 lists an application's commands from its devices' indexes) and
    # that a lookup by id answers as unknown; before it, every listed command is found.
    for command in commands.query(svc, app_id, None, *WINDOW, 0, 100)[1]:
        if step == "forget_commands":
            with pytest.raises(errors.CommandNotFound):
                commands.get(svc, app_id, command["commandId"])
        else:
            assert commands.get(svc, app_id, command["commandId"]) == command
    assert forget_all(svc, now=later) == 5  # the next run finishes the job
    assert commands.query(svc, app_id, device_id, *WINDOW, 0, 100) == (0, [])
    assert [line for line in everything(svc).splitlines() if any(i in line for i in ids)] == []


def test_queries_stay_exact_while_removal_runs(short, app_id):
    svc = short
    svc.config = svc.config.with_(retention_batch=9)
    device_ids = [
        devices.register(svc, app_id, f"node-{n}", None, None)["deviceId"] for n in (1, 2)
    ]
    finished = []
    for device_id in device_ids:
        finished += create(svc, app_id, device_id, 60)
        revoke(svc, app_id, device_id)
        ids = create(svc, app_id, device_id, 30)
        deliver_all(svc, app_id, device_id, ids)
        finished += ids
    kept = {d: create(svc, app_id, d, 7) for d in device_ids}
    all_kept = {c for ids in kept.values() for c in ids}
    later = now_ms() + 5000
    stop, querying, seen, failures = threading.Event(), threading.Event(), [], []

    def remove() -> None:
        # Once the queries run: a removal done before the second query would test nothing (and
        # a fast removal beside a slow first query did, now and then, on a loaded machine).
        querying.wait(30)
        try:
            while sum(retention.forget_due(svc, now=later).values()):
                pass
        finally:
            stop.set()

    def query() -> None:
        while not stop.is_set():
            total, page = commands.query(svc, app_id, None, *WINDOW, 0, 1000)
            listed = {c["commandId"] for c in page}
            pending = commands.query(svc, app_id, device_ids[0], *WINDOW, 0, 1000, ["PENDING"])
            count = devices.get(svc, app_id, device_ids[1])["pendingCount"]
            if not (all_kept <= listed and len(page) <= total and pending[0] == 7 == count):
                failures.append((total, len(page), pending[0], count))
            seen.append(total)
            querying.set()

    threads = [threading.Thread(target=remove), threading.Thread(target=query)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert len(seen) > 1
    assert seen == sorted(seen, reverse=True)  # totals only ever go down
    assert seen[0] <= len(finished) + len(all_kept)
    assert commands.query(svc, app_id, None, *WINDOW, 0, 1000)[0] == len(all_kept)
    assert [c for c in finished if c in everything(svc)] == []


def test_devices_of_an_older_store_join_the_retention_index(short, app_id, device_id):
    svc = short
    ids = create(svc, app_id, device_id, 2)
    for command_id in ids:
        commands.cancel(svc, app_id, command_id)
    svc.retention.unregister(app_id, device_id)  # as a store written before retention existed
    later = now_ms() + 5000
    assert forget_all(svc, now=later) == 0
    assert retention.register_existing(svc) == 1
    assert forget_all(svc, now=later) == 2


def test_a_deleted_device_goes_once_its_commands_and_tasks_are_gone(short, app_id, device_id):
    svc = short
    create(svc, app_id, device_id, 3)
    devices.delete(svc, app_id, device_id)
    (task_id,) = svc.redis.zrange(keys.device_tasks(app_id, device_id), 0, -1)
    while not revocations.sweep(svc, app_id, device_id, task_id).done:
        pass
    notifications.flush(svc, app_id, device_id)
    assert device_id in everything(svc)
    assert forget_all(svc, now=now_ms() + 5000) == 3 + 1 + 1  # commands, task, device
    # Only the application's device ordinals still name it (kept: see forget_device.lua).
    left = [line for line in everything(svc).splitlines() if device_id in line]
    assert [line.split(" ", 1)[0] for line in left] == [keys.app_device_ordinals(app_id)]
    assert commands.query(svc, app_id, None, *WINDOW, 0, 10, ["CANCELED"]) == (0, [])


def test_a_bucket_job_removes_only_its_own_bucket(short, app_id):
    svc = short
    device_ids = [devices.register(svc, app_id, f"n{i}", None, None)["deviceId"] for i in range(24)]
    for device_id in device_ids:
        commands.cancel(svc, app_id, create(svc, app_id, device_id, 1)[0])
    later = now_ms() + 5000
    by_bucket = [keys.bucket(d, svc.config.index_buckets) for d in device_ids]
    one = by_bucket[0]
    assert retention.forget_due(svc, [one], now=later)["commands"] == by_bucket.count(one)
    assert commands.query(svc, app_id, None, *WINDOW, 0, 100)[0] == 24 - by_bucket.count(one)


def test_a_refused_registration_leaves_no_retention_entry(svc, app_id, device_id):
    def entries() -> int:
        return sum(svc.redis.zcard(keys.retention(b)) for b in svc.buckets)

    assert entries() == 1
    with pytest.raises(errors.NodeIdTaken):
        devices.register(svc, app_id, "node-1", None, None)  # the fixture's device has it
    assert entries() == 1


def test_delivered_notifications_go_after_their_own_retention_failed_ones_stay(
    svc, app_id, device_id, receiver
):
    """NOTIFICATION_RETENTION shorter than COMMAND_RETENTION: a delivered record goes on its
    own, its command stays; a record that failed stays as long as its command."""
    svc.config = svc.config.with_(command_retention=3600.0, notification_retention=1.0)
    refusing = Receiver(statuses=[400])  # one POST, refused for good: failed at once
    threading.Thread(target=refusing.serve_forever, daemon=True).start()
    try:
        delivered = create(svc, app_id, device_id, 2, url=receiver.url)
        failed = create(svc, app_id, device_id, 1, url=refusing.url)
        for command_id in delivered + failed:
            commands.cancel(svc, app_id, command_id)
        notifications.flush(svc, app_id, device_id)
        sender = delivery.Sender(concurrency=2)
        before = now_ms()
        try:
            counts = delivery.deliver(svc, sender, queued_refs(svc))
        finally:
            sender.close()
    finally:
        refusing.shutdown()
        refusing.server_close()
    assert (counts["delivered"], counts["failed"]) == (2, 1)
    # Not due yet: settled after `before`, so not 1 s before `before` + 0.999 s, however long
    # a loaded machine took over the delivery and the receivers' shutdown.
    assert forget_all(svc, now=before + 999) == 0
    later = now_ms() + 1100
    assert retention.forget_due(svc, now=later) == {"notifications": 2, "failed_unlisted": 1}
    assert forget_all(svc, now=later) == 0
    for command_id in delivered + failed:
        assert commands.get(svc, app_id, command_id)["status"] == "CANCELED"
    assert [notifications.history(svc, app_id, c) for c in delivered] == [[], []]
    assert [r["state"] for r in notifications.history(svc, app_id, failed[0])] == ["failed"]
    assert svc.redis.llen(keys.notified(app_id, device_id)) == 0


def test_notifications_go_with_their_command_when_kept_as_long(svc, app_id, device_id, receiver):
    """NOTIFICATION_RETENTION not shorter than COMMAND_RETENTION: nothing is listed for the
    records, which go with their command."""
    svc.config = svc.config.with_(command_retention=1.0, notification_retention=1.0)
    ids = create(svc, app_id, device_id, 2, url=receiver.url)
    for command_id in ids:
        commands.cancel(svc, app_id, command_id)
    notifications.flush(svc, app_id, device_id)
    assert deliver_queued(svc)["delivered"] == 2
    assert svc.redis.exists(keys.notified(app_id, device_id)) == 0
    assert forget_all(svc, now=now_ms() + 1100) == 2  # the commands, their records with them
    assert [i for i in ids if i in everything(svc)] == []
