"""Revocation tasks against a real Redis: scope, fence, exact counts, retries, recovery."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from devcmd import errors
from devcmd.config import Config
from devcmd.domain import auth, commands, devices, revocations
from devcmd.embedded import RedisServer, free_port
from devcmd.services import Services
from devcmd.store import keys
from devcmd.store.notifications import Event
from tests import backends

pytestmark = [pytest.mark.integration, pytest.mark.backends(*backends.CORE, "cluster")]
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {"level": 3}}


def queue(svc, app_id, device_id, count, url=None) -> list[str]:
    options = {"callbackUrl": url}
    return [
        commands.create(svc, app_id, device_id, COMMAND, options)["commandId"] for _ in range(count)
    ]


def statuses(svc, app_id, ids) -> list[str]:
    return [commands.get(svc, app_id, command_id)["status"] for command_id in ids]


def sweep_to_end(svc, app_id, device_id, task_id):
    while not (batch := revocations.sweep(svc, app_id, device_id, task_id)).done:
        pass
    return batch


def test_open_enqueues_a_sweep_on_the_revocations_queue(svc, app_id, device_id):
    queue(svc, app_id, device_id, 3)
    revocations.open_task(svc, app_id, device_id)
    assert svc.broker_redis.llen("revocations") == 1


def test_sweep_cancels_exactly_the_scope_in_batches(svc, app_id, device_id):
    scoped = queue(svc, app_id, device_id, 50, url="http://127.0.0.1:9/cb")
    task = revocations.open_task(svc, app_id, device_id)
    later = queue(svc, app_id, device_id, 4)
    batch = sweep_to_end(svc, app_id, device_id, task["taskId"])
    assert (batch.status, batch.cancelled, batch.total) == ("SUCCESS", 50, 50)
    assert set(statuses(svc, app_id, scoped)) == {"CANCELED"}
    assert set(statuses(svc, app_id, later)) == {"PENDING"}
    events = [Event.parse(raw) for raw in svc.redis.lrange(keys.outbox(app_id, device_id), 0, -1)]
    assert {e.status for e in events} == {"CANCELED"}
    assert sorted(c for e in events for c in e.command_ids) == sorted(scoped)
    record = revocations.get(svc, app_id, task["taskId"])
    assert (record["status"], record["cancelledCount"], record["totalCount"]) == (
        "SUCCESS",
        "50",
        "50",
    )


def test_second_task_scopes_only_what_the_first_did_not(svc, app_id, device_id):
    queue(svc, app_id, device_id, 10)
    first = revocations.open_task(svc, app_id, device_id)
    queue(svc, app_id, device_id, 3)
    second = revocations.open_task(svc, app_id, device_id)
    assert (first["totalCount"], second["totalCount"]) == ("10", "3")
    assert sweep_to_end(svc, app_id, device_id, second["taskId"]).cancelled == 3
    assert sweep_to_end(svc, app_id, device_id, first["taskId"]).cancelled == 10


def test_rerunning_a_finished_sweep_changes_nothing(svc, app_id, device_id):
    queue(svc, app_id, device_id, 20, url="http://127.0.0.1:9/cb")
    task_id = revocations.open_task(svc, app_id, device_id)["taskId"]
    sweep_to_end(svc, app_id, device_id, task_id)
    outbox = svc.redis.lrange(keys.outbox(app_id, device_id), 0, -1)
    again = revocations.sweep(svc, app_id, device_id, task_id)
    assert (again.done, again.cancelled, again.cancelled_now) == (True, 20, 0)
    assert svc.redis.lrange(keys.outbox(app_id, device_id), 0, -1) == outbox


def test_concurrent_sweeps_of_one_task_never_double_count(svc, app_id, device_id):
    scoped = queue(svc, app_id, device_id, 300)
    task_id = revocations.open_task(svc, app_id, device_id)["taskId"]
    workers = [
        threading.Thread(target=sweep_to_end, args=(svc, app_id, device_id, task_id))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    record = revocations.get(svc, app_id, task_id)
    assert (record["status"], record["cancelledCount"]) == ("SUCCESS", "300")
    assert set(statuses(svc, app_id, scoped)) == {"CANCELED"}


def test_part_success_when_some_were_cancelled_singly_first(svc, app_id, device_id):
    scoped = queue(svc, app_id, device_id, 12)
    task_id = revocations.open_task(svc, app_id, device_id)["taskId"]
    for command_id in scoped[:5]:
        commands.cancel(svc, app_id, command_id)
    batch = sweep_to_end(svc, app_id, device_id, task_id)
    assert (batch.status, batch.cancelled, batch.total) == ("PART_SUCCESS", 7, 12)
    assert "5 command(s)" in revocations.get(svc, app_id, task_id)["reason"]


def test_failed_when_nothing_in_scope_was_left(svc, app_id, device_id):
    scoped = queue(svc, app_id, device_id, 3)
    task_id = revocations.open_task(svc, app_id, device_id)["taskId"]
    for command_id in scoped:
        commands.cancel(svc, app_id, command_id)
    batch = sweep_to_end(svc, app_id, device_id, task_id)
    assert (batch.status, batch.cancelled, batch.total) == ("FAILED", 0, 3)
    assert revocations.get(svc, app_id, task_id)["reason"]


def test_empty_scope_succeeds_at_once(svc, app_id, device_id):
    task = revocations.open_task(svc, app_id, device_id)
    batch = revocations.sweep(svc, app_id, device_id, task["taskId"])
    assert (task["totalCount"], batch.status, batch.done) == ("0", "SUCCESS", True)


def test_a_task_whose_message_was_lost_is_resumed(svc, app_id, device_id):
    queue(svc, app_id, device_id, 5)
    task_id = revocations.open_task(svc, app_id, device_id)["taskId"]
    svc.broker_redis.delete("revocations")
    svc.config = svc.config.with_(stall_seconds=0)
    assert revocations.resume_stalled(svc) == 1
    assert svc.broker_redis.llen("revocations") == 1
    sweep_to_end(svc, app_id, device_id, task_id)
    assert revocations.resume_stalled(svc) == 0


def test_deleting_a_device_cancels_its_commands_in_the_background(svc, app_id, device_id):
    scoped = queue(svc, app_id, device_id, 9)
    devices.delete(svc, app_id, device_id)
    with pytest.raises(errors.DeviceNotFound):
        commands.create(svc, app_id, device_id, COMMAND, {})
    bucket = keys.bucket(device_id, svc.config.index_buckets)
    (member,) = svc.redis.zrange(keys.active_tasks(bucket), 0, -1)
    sweep_to_end(svc, app_id, device_id, member.split("/")[2])
    assert set(statuses(svc, app_id, scoped)) == {"CANCELED"}
    assert revocations.query(svc, app_id, {"start": 0, "end": 2**53}, 0, 10) == (0, [])


def wait_aof_written(port: int, timeout: float = 10.0) -> None:
    """Wait until the server has written everything it acknowledged to its AOF file (a SIGKILL
    loses nothing written; with appendfsync everysec a busy disk may hold writes back 2 s)."""
    client = redis.Redis(port=port)
    deadline = time.monotonic() + timeout
    while client.info("persistence").get("aof_buffer_length", 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    client.close()


def test_a_task_survives_a_redis_crash(tmp_path):
    """Guarantee 4 with AOF: kill -9 Redis after the 201, restart it, and the sweep completes."""
    server = RedisServer(tmp_path / "redis", free_port()).start()
    try:
        svc = Services.from_config(Config(redis_url=server.url))
        auth.create_application(svc, app_id="crash", secret="s")
        device_id = devices.register(svc, "crash", "n", None, None)["deviceId"]
        scoped = queue(svc, "crash", device_id, 25)
        task_id = revocations.open_task(svc, "crash", device_id)["taskId"]
        wait_aof_written(server.port)
        server.kill()
        server.start()
        svc.redis.connection_pool.disconnect()
        sweep_to_end(svc, "crash", device_id, task_id)
        assert set(statuses(svc, "crash", scoped)) == {"CANCELED"}
        assert revocations.get(svc, "crash", task_id)["status"] == "SUCCESS"
        svc.close()
    finally:
        server.stop()


def test_a_large_inline_list_is_answered_whole(svc, app_id, device_id):
    """TASK_INLINE_COMMANDS far above Lua's unpack limit: the answer lists every scoped command
    (the script reads the documents in chunks) instead of failing after it has written."""
    svc.config = svc.config.with_(task_inline_commands=10_000, max_pending_per_device=20_000)
    pipe_ids = [
        commands.create(svc, app_id, device_id, COMMAND, {})["commandId"] for _ in range(9_000)
    ]
    task = revocations.open_task(svc, app_id, device_id)
    assert task["totalCount"] == "9000"
    assert [c["commandId"] for c in task["deviceCommands"]] == pipe_ids
