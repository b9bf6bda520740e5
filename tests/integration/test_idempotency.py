"""Idempotency-Key on the POSTs that create (app/idempotency.py, devcmd/domain/idempotency.py),
through the Flask app on a real Redis: replays, refusals, concurrency, scoping, and a crash
between the effect and the recording of its answer (a real process killing itself)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from app import create_app
from devcmd.clock import now_ms
from devcmd.domain import auth, commands, idempotency
from devcmd.store import keys
from tests.integration.test_backpressure import snapshot

CMDS = "/iocm/app/cmd/v1.4.0/deviceCommands"
TASKS = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"
REG = "/iocm/app/reg/v1.1.0/deviceCredentials"
ENOS = "/connect-service/v2.1/commands"
COMMAND = {"serviceId": "Light", "method": "SWITCH", "paras": {"on": True}}


@pytest.fixture
def client(svc):
    return create_app(services=svc).test_client()


def create(client, headers, device_id, key, paras=None, **extra):
    body = {"deviceId": device_id, "command": COMMAND | {"paras": paras or {"on": True}}}
    return client.post(CMDS, json=body, headers=headers | {"Idempotency-Key": key}, **extra)


def commands_of(svc, app_id: str) -> list[str]:
    """Every command id of the application, oldest first (whichever device it is on)."""
    _, found = commands.query(svc, app_id, None, 0, 2**62, 0, 1000)
    return [command["commandId"] for command in reversed(found)]


def test_a_retried_create_answers_the_first_answer_and_creates_nothing_more(
    client, svc, app_id, headers, device_id
):
    first = create(client, headers, device_id, "order-1")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    for _ in range(3):
        again = create(client, headers, device_id, "order-1")
        assert (again.status_code, again.data) == (201, first.data)
        assert again.headers["Idempotent-Replayed"] == "true"
    assert commands_of(svc, app_id) == [first.json["commandId"]]
    assert (
        create(client, headers, device_id, "order-2").json["commandId"] != first.json["commandId"]
    )
    assert len(commands_of(svc, app_id)) == 2


@pytest.mark.parametrize(
    "change",
    [
        {"paras": {"on": False}},  # another body
        {"query_string": {"appId": "app-a"}},  # another query
    ],
)
def test_the_same_key_with_another_request_is_422_and_changes_nothing(
    client, svc, app_id, headers, device_id, change
):
    first = create(client, headers, device_id, "k")
    before = snapshot(svc)
    refused = create(client, headers, device_id, "k", **change)
    assert (refused.status_code, refused.json["error_code"]) == (422, "100422")
    assert "Idempotency-Key" in refused.json["error_desc"]
    assert commands_of(svc, app_id) == [first.json["commandId"]]
    assert snapshot(svc) == before


def test_the_key_is_the_calling_applications_own(client, svc, app_id, headers, device_id):
    auth.create_application(svc, app_id="app-b", secret="secret-b")
    token = auth.login(svc, "app-b", "secret-b")["accessToken"]
    other = {"app_key": "app-b", "Authorization": f"Bearer {token}"}
    device_b = client.post(REG, json={"nodeId": "b-1"}, headers=other).json["deviceId"]
    mine = create(client, headers, device_id, "shared-key")
    theirs = create(client, other, device_b, "shared-key")
    assert theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs.headers
    assert commands_of(svc, "app-b") == [theirs.json["commandId"]]
    assert commands_of(svc, app_id) == [mine.json["commandId"]]


def test_a_retried_revocation_task_is_one_task(client, svc, app_id, headers, device_id):
    for _ in range(3):
        create(client, headers, device_id, f"c{_}")
    body = {"deviceId": device_id}
    key = {"Idempotency-Key": '"revoke-node-1"'}  # the draft's Structured Fields string
    first = client.post(TASKS, json=body, headers=headers | key)
    assert (first.status_code, first.json["status"], first.json["totalCount"]) == (
        201,
        "WAITING",
        3,
    )
    again = client.post(TASKS, json=body, headers=headers | key)
    assert (again.status_code, again.data) == (201, first.data)
    listed = client.get(TASKS, headers=headers).json
    assert listed["pagination"]["totalSize"] == 1
    assert listed["data"][0]["taskId"] == first.json["taskId"]


def test_a_retried_registration_is_one_device_with_the_first_psk(client, svc, app_id, headers):
    key = {"Idempotency-Key": "register-node-7"}
    first = client.post(REG, json={"nodeId": "node-7"}, headers=headers | key)
    again = client.post(REG, json={"nodeId": "node-7"}, headers=headers | key)
    assert first.status_code == again.status_code == 200
    assert again.json == first.json
    assert svc.redis.zcard(keys.app_devices(app_id)) == 1
    device = svc.devices.get(app_id, first.json["deviceId"])
    assert device is not None
    # Without the key, the same body is a second registration of a taken nodeId.
    assert client.post(REG, json={"nodeId": "node-7"}, headers=headers).status_code == 409


def test_an_error_answer_is_not_kept_and_a_retry_runs_again(client, svc, app_id, headers):
    missing = create(client, headers, "no-such-device", "k")
    assert missing.status_code == 404
    retried = create(client, headers, "no-such-device", "k")
    assert retried.status_code == 404
    assert "Idempotent-Replayed" not in retried.headers


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_a_malformed_key_is_400_and_creates_nothing(client, svc, app_id, headers, device_id, key):
    reply = create(client, headers, device_id, key)
    assert (reply.status_code, reply.json["error_code"]) == (400, "100022")
    assert "Idempotency-Key" in reply.json["error_desc"]
    assert commands_of(svc, app_id) == []


def enos_invoke(client, headers, device_id, key):
    """An instant EnOS invoke: it waits for a device that never comes (ENOS_INVOKE_WAIT)."""
    return client.post(
        f"{ENOS}?action=invokeService&orgId=app-a&assetId={device_id}&serviceId=s&pendingTtl=0"
        "&timeout=30",
        json={"inputData": {"x": 1}},
        headers=headers | {"Idempotency-Key": key},
    )


def concurrently(call, count: int, held, ended: list | None = None) -> list:
    """`count` calls at once, the others once the first holds the key (`held()` is true);
    `ended` gets the index of each call as it returns."""
    replies: list = [None] * count
    ended = [] if ended is None else ended

    def run(i: int) -> None:
        replies[i] = call()
        ended.append(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    threads[0].start()
    deadline = time.monotonic() + 30
    while not held():
        assert time.monotonic() < deadline, "the first call never took the key"
        time.sleep(0.01)
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join()
    return replies


def holding(svc, key: str):
    """Whether a request holds (or held) the idempotency key `key` of app-a."""
    return lambda: svc.redis.exists(svc.idempotency.record_key("app-a", key))


def test_a_request_in_flight_is_waited_for_and_its_answer_shared(svc, app_id, headers, device_id):
    svc.config = svc.config.with_(enos_invoke_wait=1.0, idempotency_wait=5.0)
    client = create_app(services=svc).test_client()
    replies = concurrently(
        lambda: enos_invoke(client, headers, device_id, "inv-1"), 3, holding(svc, "inv-1")
    )
    assert [r.json["code"] for r in replies] == [0, 0, 0]
    assert len({r.json["data"]["commandId"] for r in replies}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in replies) == 2
    assert len(commands_of(svc, app_id)) == 1


def test_a_request_in_flight_too_long_gets_409_with_retry_after(svc, app_id, headers, device_id):
    svc.config = svc.config.with_(enos_invoke_wait=1.5, idempotency_wait=0.2)
    client = create_app(services=svc).test_client()
    order: list[int] = []
    first, second = concurrently(
        lambda: enos_invoke(client, headers, device_id, "inv-2"), 2, holding(svc, "inv-2"), order
    )
    assert first.json["code"] == 0
    assert second.json["code"] == 99425  # EnOS: HTTP 200, the outcome in `code`
    assert int(second.headers["Retry-After"]) >= 1
    assert order == [1, 0]  # refused while the first still waited for its device
    other = client.post(
        TASKS, json={"deviceId": device_id}, headers=headers | {"Idempotency-Key": "inv-2"}
    )
    assert other.status_code == 422  # the key names the invoke, not this request
    assert len(commands_of(svc, app_id)) == 1


CRASH = """
import os, sys
from app import create_app
from devcmd.config import Config
from devcmd.store.idempotency import IdempotencyStore

# The process dies right after the effect, before the answer is recorded: kill -9 timing.
IdempotencyStore.settle = lambda *a, **k: os._exit(137)
config = Config().with_(redis_url=sys.argv[1], callback_allow_private=True)
client = create_app(config).test_client()
body = {"deviceId": sys.argv[2], "command": {"serviceId": "Light", "method": "SWITCH",
        "paras": {"on": True}}}
client.post("/iocm/app/cmd/v1.4.0/deviceCommands", json=body,
            headers={"app_key": "app-a", "Authorization": sys.argv[3],
                     "Idempotency-Key": "crash-1"})
"""


def test_a_crash_between_the_effect_and_its_answer_never_makes_a_second_command(
    svc, app_id, headers, device_id, redis_url
):
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, redis_url, device_id, headers["Authorization"]],
        check=False,
        timeout=60,
    )
    assert crashed.returncode == 137
    (created,) = commands_of(svc, app_id)  # the effect happened, its answer was never recorded
    svc.config = svc.config.with_(idempotency_lease=1.0, idempotency_wait=0.0, enos_invoke_wait=0)
    client = create_app(services=svc).test_client()
    busy = create(client, headers, device_id, "crash-1")
    assert (busy.status_code, busy.json["error_code"]) == (409, "100409")
    assert busy.headers["Retry-After"]
    # The crashed attempt's lease is the configured default (60 s): shorten it as time would.
    record = svc.idempotency.record_key("app-a", "crash-1")
    svc.redis.hset(record, "lease", 0)
    retried = create(client, headers, device_id, "crash-1")
    assert retried.status_code == 201
    assert retried.json["commandId"] == created
    assert retried.json["status"] == "PENDING"
    assert commands_of(svc, app_id) == [created]
    assert create(client, headers, device_id, "crash-1").data == retried.data


@pytest.mark.parametrize(("lease", "wait", "held_ms"), [(1.0, 4.0, 8000), (30.0, 4.0, 30000)])
def test_a_key_is_held_at_least_twice_as_long_as_an_enos_invoke_may_wait(
    svc, app_id, lease, wait, held_ms
):
    """An EnOS invokeService waits up to ENOS_INVOKE_WAIT for the device's answer while it holds
    its key: the key's lease is IDEMPOTENCY_LEASE, but never under twice that wait, so a retry
    cannot take the key from an attempt still waiting."""
    svc.config = svc.config.with_(idempotency_lease=lease, enos_invoke_wait=wait)
    before = now_ms()
    with idempotency.attempt(svc, app_id, f"lease-{lease}", "fingerprint") as attempt:
        assert attempt.seed
        lease_until = int(
            svc.redis.hget(svc.idempotency.record_key(app_id, f"lease-{lease}"), "lease")
        )
        assert held_ms <= lease_until - before <= held_ms + 2000
