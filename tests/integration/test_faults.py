"""The data store in trouble, on a real server of the test's own (the session's shared server is
never broken): stopped, paused (CLIENT PAUSE), full (maxmemory with noeviction), read-only (a
replica). Every call answers 503 with its dialect's code and Retry-After within the configured
timeout, writes nothing half-way, and the same process serves again once the server is back.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator

import pytest
import redis

from app import create_app
from app.flow import STORAGE_PREFIX
from devcmd.config import Config
from devcmd.domain import auth, commands, devices, health, notifications, revocations
from devcmd.embedded import free_port
from devcmd.jobs import Broker
from devcmd.services import Services
from devcmd.store import keys
from tests.integration.test_backpressure import READ

pytestmark = pytest.mark.integration

# REDIS_SOCKET_TIMEOUT and REDIS_CONNECT_TIMEOUT of these tests. A call may take one of them
# and no more than two: a second is a retry. What is left of the second one is the room for a
# loaded machine, so it is a whole second.
TIMEOUT = 1.0
RETRY_AFTER = 7
CMDS = "/iocm/app/cmd/v1.4.0/deviceCommands"
TASKS = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"
DEVICE = "/iocm/app/dm/v1.4.0/devices/{}"
ENOS = "/connect-service/v2.1/commands"
LOGIN = "/iocm/app/sec/v1.1.0/login"


@pytest.fixture
def admin(server) -> Iterator[redis.Redis]:
    """A client of the test's own, to break and mend the server."""
    client = redis.Redis(port=server.port, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def svc(server) -> Iterator[Services]:
    config = Config().with_(
        redis_url=server.url,
        redis_socket_timeout=TIMEOUT,
        redis_connect_timeout=TIMEOUT,
        storage_retry_after=RETRY_AFTER,
        rate_limit_per_minute=1_000_000,
        callback_allow_private=True,
    )
    services = Services.from_config(config)
    yield services
    services.close()


@pytest.fixture
def client(svc):
    return create_app(services=svc).test_client()


@pytest.fixture
def world(svc) -> dict:
    """An application, its token, a device (with EnOS names) and one pending command."""
    auth.create_application(svc, app_id="app-a", secret="secret-a")
    token = auth.login(svc, "app-a", "secret-a")["accessToken"]
    device = devices.register(svc, "app-a", "node-1", None, None, assetId="asset-1")
    command = {"serviceId": "s", "method": "m", "paras": {}}
    created = commands.create(svc, "app-a", device["deviceId"], command, {})
    basic = base64.b64encode(f"{device['deviceId']}:{device['psk']}".encode()).decode()
    return {
        "headers": {"app_key": "app-a", "Authorization": f"Bearer {token}"},
        "device": {"Authorization": f"Basic {basic}"},
        "deviceId": device["deviceId"],
        "commandId": created["commandId"],
    }


def calls(world: dict) -> dict[str, tuple]:
    """One call of each kind: (method, path, keyword arguments), OceanConnect, EnOS, device."""
    headers, device_id = world["headers"], world["deviceId"]
    enos = f"{ENOS}?orgId=app-a&assetId=asset-1"
    return {
        "query device": ("get", DEVICE.format(device_id), {"headers": headers}),
        "create command": ("post", CMDS, {"headers": headers, "json": _command(device_id)}),
        "open task": ("post", TASKS, {"headers": headers, "json": {"deviceId": device_id}}),
        "login": ("post", LOGIN, {"data": {"appId": "app-a", "secret": "secret-a"}}),
        "enos get": (
            "get",
            f"{enos}&action=get&commandId={world['commandId']}",
            {"headers": headers},
        ),
        "enos invoke": (
            "post",
            f"{enos}&action=invokeService&serviceId=s&pendingTtl=60",
            {"headers": headers, "json": {"inputData": {}}},
        ),
        "device fetch": (
            "get",
            f"/southbound/v1/devices/{device_id}/commands?max=1",
            {"headers": world["device"]},
        ),
    }


def _command(device_id: str) -> dict:
    return {"deviceId": device_id, "command": {"serviceId": "s", "method": "m", "paras": {}}}


def timed(client, method: str, path: str, **kwargs):
    started = time.monotonic()
    reply = getattr(client, method)(path, **kwargs)
    return reply, time.monotonic() - started


def assert_unavailable(reply, path: str) -> None:
    """503 with Retry-After and the dialect's envelope and code."""
    assert reply.status_code == 503, (path, reply.status_code, reply.json)
    assert reply.headers["Retry-After"] == str(RETRY_AFTER), (path, dict(reply.headers))
    if path.startswith(ENOS):
        assert reply.json["code"] == 99503, reply.json
        assert reply.json["requestId"]
        assert "retry later" in reply.json["submsg"]
    else:
        assert reply.json["error_code"] == "100503", reply.json
        assert "retry later" in reply.json["error_desc"]


def keys_and_values(admin: redis.Redis) -> dict[str, object]:
    """Every key with its value (to show that a refused call wrote nothing), but flow control's
    counters (a call counts against the caller's limit before it runs). Values, not DUMP bytes:
    a hash's encoding may change without a write."""
    found = sorted(key for key in admin.scan_iter() if not key.startswith(STORAGE_PREFIX))
    return {key: READ[admin.type(key)](admin, key) for key in found}


def test_a_stopped_server_gets_a_fast_503_everywhere_and_the_same_process_heals(
    client, server, world
) -> None:
    for name, (method, path, kwargs) in calls(world).items():
        assert timed(client, method, path, **kwargs)[0].status_code in (200, 201), name
    server.stop()
    for name, (method, path, kwargs) in calls(world).items():
        reply, took = timed(client, method, path, **kwargs)
        assert_unavailable(reply, path)
        assert took < 2 * TIMEOUT, (name, took)  # refused at once: no retry loop
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "ConnectionError" in ready.json["checks"]["redis"]["error"]

    server.start()  # same data directory: the AOF brings everything back
    method, path, kwargs = calls(world)["query device"]
    assert timed(client, method, path, **kwargs)[0].status_code == 200


def test_a_paused_server_gets_503_within_the_socket_timeout(client, admin, world) -> None:
    pause = 6 * TIMEOUT  # room for the three calls of one timeout each
    admin.execute_command("CLIENT", "PAUSE", int(pause * 1000))
    started = time.monotonic()
    for name in ("query device", "enos get", "device fetch"):
        method, path, kwargs = calls(world)[name]
        reply, took = timed(client, method, path, **kwargs)
        assert_unavailable(reply, path)
        assert TIMEOUT * 0.9 < took < 2 * TIMEOUT, (name, took)  # one timeout, no retries
    assert time.monotonic() - started < pause  # the three calls did not wait for the pause
    time.sleep(max(0.0, pause - (time.monotonic() - started)) + 0.2)
    method, path, kwargs = calls(world)["query device"]
    assert timed(client, method, path, **kwargs)[0].status_code == 200


def test_a_full_server_refuses_writes_with_503_and_keeps_nothing_of_them(
    client, admin, svc, world
) -> None:
    admin.config_set("maxmemory", 1)  # noeviction: every write that may add memory is refused
    before = keys_and_values(admin)
    for name in ("create command", "open task", "enos invoke"):
        method, path, kwargs = calls(world)[name]
        reply, took = timed(client, method, path, **kwargs)
        assert_unavailable(reply, path)
        assert took < 2 * TIMEOUT, (name, took)
    assert "OOM" in client.post(CMDS, **calls(world)["create command"][2]).json["error_desc"]
    assert keys_and_values(admin) == before
    # Reads still work, and readiness names the cause.
    method, path, kwargs = calls(world)["query device"]
    assert client.get(path, **kwargs).status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "maxmemory" in ready.json["checks"]["redis"]["error"]

    admin.config_set("maxmemory", 0)
    method, path, kwargs = calls(world)["create command"]
    assert client.post(path, **kwargs).status_code == 201
    assert health.readiness(svc)[1]["redis"]["ok"]


def test_readiness_fails_above_the_memory_limit_before_writes_fail(client, admin, svc) -> None:
    # A low limit leaves room for the memory a server's own clients take between two readings
    # (Valkey counts their buffers: they grew 6% between two calls here).
    svc.config = svc.config.with_(redis_memory_ready_limit=0.5)
    used = health.redis_state(svc)["used_memory"]
    limit = svc.config.redis_memory_ready_limit
    most = int(used / limit * 0.75)  # over the limit, well under maxmemory
    admin.config_set("maxmemory", most)
    ready, checks = health.readiness(svc)
    assert not ready
    assert "REDIS_MEMORY_READY_LIMIT" in checks["redis"]["error"]
    assert checks["redis"]["maxMemory"] > checks["redis"]["usedMemory"]
    scrape = client.get("/metrics").text
    gauge = re.search(r"^devcmd_redis_maxmemory_bytes (\S+)$", scrape, re.MULTILINE)
    assert gauge
    assert float(gauge.group(1)) == most
    assert "devcmd_redis_used_memory_bytes " in scrape
    admin.config_set("maxmemory", int(used / limit * 2))
    assert health.readiness(svc)[1]["redis"]["ok"]


def test_a_read_only_replica_gets_503_and_fails_readiness(client, admin, world) -> None:
    other = free_port()  # nothing listens: a replica whose master is gone, as after a failover
    admin.execute_command("REPLICAOF", "127.0.0.1", other)
    try:
        _, path, kwargs = calls(world)["create command"]
        reply = client.post(path, **kwargs)
        assert_unavailable(reply, path)
        assert "READONLY" in reply.json["error_desc"]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "read-only" in ready.json["checks"]["redis"]["error"]
    finally:
        admin.execute_command("REPLICAOF", "NO", "ONE")


class FillsUpAfterOpen(Broker):
    """The real broker (the same Redis), with the server running out of memory between the
    task's opening (its first write) and the enqueue of its sweep (its second)."""

    def __init__(self, svc: Services, admin: redis.Redis) -> None:
        super().__init__(svc.broker.celery)
        self.admin = admin

    def sweep(self, *args, **kwargs) -> None:
        self.admin.config_set("maxmemory", 1)
        super().sweep(*args, **kwargs)


def test_oom_between_opening_a_task_and_enqueueing_it_still_finishes_the_task(
    admin, svc, world
) -> None:
    """The 201 is kept: the fence is written, and the lost enqueue is redone by beat's stall
    recovery once the server takes writes again."""
    svc.broker = FillsUpAfterOpen(svc, admin)
    task = revocations.open_task(svc, "app-a", world["deviceId"])
    assert task["status"] == "WAITING"
    assert int(task["totalCount"]) == 1
    assert admin.llen("revocations") == 0  # the enqueue was refused
    admin.config_set("maxmemory", 0)
    svc.broker = Broker(svc.broker.celery)

    stalled = svc.config.with_(stall_seconds=0)
    assert revocations.resume_stalled(Services(stalled, svc.redis, svc.broker)) == 1
    assert admin.llen("revocations") == 1
    while not revocations.sweep(svc, "app-a", world["deviceId"], task["taskId"]).done:
        pass
    done = revocations.get(svc, "app-a", task["taskId"])
    assert (done["status"], int(done["cancelledCount"])) == ("SUCCESS", 1)


def test_oom_before_a_cancel_leaves_the_command_pending_and_no_lost_callback(
    client, admin, svc, world
) -> None:
    """Cancel with a callbackUrl writes the outbox's dirty mark, then cancels: with the server
    full in between, the call answers 503, the command stays PENDING and can be cancelled once
    the server takes writes; the early mark is cleared by beat's drain."""
    body = _command(world["deviceId"]) | {"callbackUrl": "http://127.0.0.1:9/cb"}
    command_id = client.post(CMDS, json=body, headers=world["headers"]).json["commandId"]
    real_mark = svc.outbox.mark_dirty

    def mark_then_fill(*args) -> None:
        real_mark(*args)
        admin.config_set("maxmemory", 1)

    svc.outbox.mark_dirty = mark_then_fill
    cancel = {"json": {"status": "CANCELED"}, "headers": world["headers"]}
    reply = client.put(f"{CMDS}/{command_id}", **cancel)
    assert_unavailable(reply, CMDS)
    assert commands.get(svc, "app-a", command_id)["status"] == "PENDING"

    svc.outbox.mark_dirty = real_mark
    admin.config_set("maxmemory", 0)
    assert client.put(f"{CMDS}/{command_id}", **cancel).json["status"] == "CANCELED"
    assert notifications.drain_dirty(svc) == 1


def filling_first(admin: redis.Redis, call):
    """`call`, preceded by the server running out of memory (noeviction, 1-byte limit)."""

    def run(*args, **kwargs):
        admin.config_set("maxmemory", 1)
        return call(*args, **kwargs)

    return run


@pytest.mark.parametrize("path", ["cluster steps", "one pipeline"])
def test_oom_between_the_indexes_and_the_script_of_a_create_leaves_no_trace(
    client, admin, svc, world, path
) -> None:
    """On a cluster a create writes the application's indexes (other hash slots), then runs its
    script: with the server full in between, the script is refused, the indexes are removed
    again, and the call answers 503 with every key as it was. On one server the same writes go
    as one pipeline: the server filling up as it is sent leaves no trace either."""
    store = svc.commands
    real_script, real_at_once = svc.scripts.create_command, store._create_at_once
    real_queue = store.timers.queue_schedule

    fill_then_run, fill_then_queue = (
        filling_first(admin, real_script),
        filling_first(admin, real_queue),
    )
    before = keys_and_values(admin)
    if path == "cluster steps":  # a single server taking the cluster's path, step by step
        svc.scripts.create_command = fill_then_run
        store._create_at_once = store._create_in_steps
    else:
        store.timers.queue_schedule = fill_then_queue
    _, create_path, kwargs = calls(world)["create command"]
    reply = client.post(create_path, **kwargs)
    assert_unavailable(reply, create_path)
    assert "OOM" in reply.json["error_desc"]
    assert keys_and_values(admin) == before
    listed = client.get(f"{CMDS}?deviceId={world['deviceId']}", headers=world["headers"])
    assert listed.json["pagination"]["totalSize"] == 1  # no ghost of the refused command

    svc.scripts.create_command, store._create_at_once = real_script, real_at_once
    store.timers.queue_schedule = real_queue
    admin.config_set("maxmemory", 0)
    assert client.post(create_path, **kwargs).status_code == 201


def test_oom_between_claiming_an_app_id_and_writing_the_app_leaves_the_id_free(admin, svc) -> None:
    real_hset = svc.redis.hset

    fill_then_hset = filling_first(admin, real_hset)  # the record's write, after the claim
    before = keys_and_values(admin)
    svc.redis.hset = fill_then_hset
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        auth.create_application(svc, app_id="app-b", secret="secret-b")
    svc.redis.hset = real_hset
    assert keys_and_values(admin) == before
    admin.config_set("maxmemory", 0)
    assert auth.create_application(svc, app_id="app-b", secret="secret-b")["appId"] == "app-b"


def test_a_server_that_lost_its_scripts_still_creates_and_hands_out_commands(
    client, admin, world
) -> None:
    """Create and device fetch send their script by sha inside a pipeline with the timer
    writes: on a server that lost its scripts (restarted, SCRIPT FLUSH) the script runs again,
    loaded, and the command is created and handed out once each."""
    _, create_path, create_kwargs = calls(world)["create command"]
    _, fetch_path, fetch_kwargs = calls(world)["device fetch"]
    admin.script_flush()
    created = client.post(create_path, **create_kwargs)
    assert created.status_code == 201
    admin.script_flush()
    first = client.get(fetch_path, **fetch_kwargs)
    second = client.get(fetch_path, **fetch_kwargs)
    third = client.get(fetch_path, **fetch_kwargs)
    handed = [c["commandId"] for r in (first, second, third) for c in r.json["commands"]]
    assert handed == [world["commandId"], created.json["commandId"]]


@pytest.mark.parametrize("path", ["cluster steps", "one pipeline"])
def test_oom_between_the_indexes_and_the_script_of_an_open_task_leaves_no_trace(
    client, admin, svc, world, path
) -> None:
    """A task's opening writes the active and the application's task indexes (other hash
    slots) before its script: on a cluster step by step, on one server in one pipeline with
    the script. The server filling up in between leaves every key as it was, and a 503."""
    store = svc.revocations
    real_script, real_queue = svc.scripts.open_task, store._queue_indexes

    fill_then_run, fill_then_queue = (
        filling_first(admin, real_script),
        filling_first(admin, real_queue),
    )
    before = keys_and_values(admin)
    if path == "cluster steps":  # a single server taking the cluster's path, step by step
        svc.scripts.open_task = fill_then_run
        store._open_at_once = lambda *steps: (store._open_in_steps(*steps), None)
    else:
        store._queue_indexes = fill_then_queue
    _, open_path, kwargs = calls(world)["open task"]
    reply = client.post(open_path, **kwargs)
    assert_unavailable(reply, open_path)
    assert "OOM" in reply.json["error_desc"]
    assert keys_and_values(admin) == before

    svc.scripts.open_task, store._queue_indexes = real_script, real_queue
    store.__dict__.pop("_open_at_once", None)
    admin.config_set("maxmemory", 0)
    opened = client.post(open_path, **kwargs)
    assert (opened.status_code, opened.json["status"]) == (201, "WAITING")
    listed = client.get(f"{TASKS}?deviceId={world['deviceId']}", headers=world["headers"])
    assert [t["taskId"] for t in listed.json["data"]] == [opened.json["taskId"]]


def test_a_server_that_lost_its_scripts_still_opens_a_revocation_task(
    client, admin, svc, world
) -> None:
    """The open script goes by sha in a pipeline with the indexes and the task's read: after
    SCRIPT FLUSH it runs again alone, and the answer still carries the task's record."""
    _, open_path, kwargs = calls(world)["open task"]
    admin.script_flush()
    opened = client.post(open_path, **kwargs)
    assert opened.status_code == 201, opened.json
    assert (opened.json["status"], opened.json["totalCount"]) == ("WAITING", 1)
    assert opened.json["deviceCommands"][0]["commandId"] == world["commandId"]
    task = revocations.get(svc, "app-a", opened.json["taskId"])
    assert (task["status"], task["deviceId"]) == ("WAITING", world["deviceId"])
    active = keys.active_tasks(keys.bucket(world["deviceId"], svc.config.index_buckets))
    member = f"app-a/{world['deviceId']}/{opened.json['taskId']}"
    assert admin.zscore(active, member) is not None  # the stalled-task job finds it
