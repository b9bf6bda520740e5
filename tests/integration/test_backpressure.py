"""Backpressure on a real Redis and the real Celery broker: while the revocations or callbacks
queue is deeper than its limit, calls that would add revocation work answer 503 100501 (EnOS
99503) with Retry-After and write nothing; once the backlog drains they work again."""

from __future__ import annotations

import pytest

from app import create_app
from app.flow import STORAGE_PREFIX
from devcmd.domain import commands
from devcmd.jobs import QUEUE_CALLBACKS, QUEUE_REVOCATIONS, SWEEP, queue_depths, queue_lists

pytestmark = pytest.mark.integration
TASKS = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"
DEVICES = "/iocm/app/dm/v1.4.0/devices/"
ENOS = "/connect-service/v2.1/commands"
LIMIT = 3


@pytest.fixture
def client(svc):
    svc.config = svc.config.with_(revocation_queue_limit=LIMIT, callback_queue_limit=LIMIT)
    return create_app(services=svc).test_client()


@pytest.fixture
def pending(svc, app_id, device_id) -> list[str]:
    command = {"serviceId": "s", "method": "m", "paras": {}}
    return [commands.create(svc, app_id, device_id, command, {})["commandId"] for _ in range(3)]


READ = {
    "string": lambda r, k: r.get(k),
    "hash": lambda r, k: r.hgetall(k),
    "list": lambda r, k: r.lrange(k, 0, -1),
    "set": lambda r, k: r.smembers(k),
    "zset": lambda r, k: r.zrange(k, 0, -1, withscores=True),
    "stream": lambda r, k: r.xrange(k),
}


def snapshot(svc) -> dict[str, object]:
    """Every devcmd key (but flow-control counters: a refused call still counts) with its
    value, and the broker's queue lists."""
    state: dict[str, object] = {
        key: READ[svc.redis.type(key)](svc.redis, key)
        for key in svc.redis.scan_iter("dc:*")
        if not key.startswith(STORAGE_PREFIX)
    }
    for queue in (QUEUE_REVOCATIONS, QUEUE_CALLBACKS):
        for name in queue_lists(queue):
            state[name] = svc.redis.lrange(name, 0, -1)
    return state


def fill(svc, list_name: str, count: int) -> None:
    svc.redis.rpush(list_name, *[f"dummy-{i}" for i in range(count)])


def assert_congested(reply, queue: str) -> None:
    assert reply.status_code == 503
    assert reply.json["error_code"] == "100501"
    assert f"The {queue} queue holds" in reply.json["error_desc"]
    assert reply.headers["Retry-After"] == "5"


def test_queue_depths_reads_what_celery_publishes_including_priorities(svc):
    assert queue_depths(svc.redis) == {QUEUE_REVOCATIONS: 0, QUEUE_CALLBACKS: 0}
    svc.broker.sweep("app-a", "dev", "task")
    svc.broker.celery.send_task(SWEEP, args=["app-a", "dev", "task"], priority=9)
    svc.broker.flush("app-a", "dev")
    assert queue_depths(svc.redis) == {QUEUE_REVOCATIONS: 2, QUEUE_CALLBACKS: 1}
    assert svc.redis.llen(queue_lists(QUEUE_REVOCATIONS)[-1]) == 1  # the priority list


def test_a_revocation_task_waits_while_the_revocations_queue_is_over_its_limit(
    svc, client, headers, device_id, pending
):
    fill(svc, QUEUE_REVOCATIONS, LIMIT + 1)
    before = snapshot(svc)
    assert_congested(
        client.post(TASKS, json={"deviceId": device_id}, headers=headers), "revocations"
    )
    assert snapshot(svc) == before  # no task, no fence, no sweep message

    svc.redis.lpop(QUEUE_REVOCATIONS)  # back to the limit: not over it
    opened = client.post(TASKS, json={"deviceId": device_id}, headers=headers)
    assert opened.status_code == 201
    assert opened.json["totalCount"] == len(pending)
    assert "Retry-After" not in opened.headers
    assert queue_depths(svc.redis)[QUEUE_REVOCATIONS] == LIMIT + 1  # its sweep was enqueued


def test_a_callback_backlog_in_a_priority_list_also_holds_revocations(
    svc, client, headers, device_id, pending
):
    fill(svc, queue_lists(QUEUE_CALLBACKS)[2], LIMIT + 1)
    before = snapshot(svc)
    assert_congested(client.post(TASKS, json={"deviceId": device_id}, headers=headers), "callbacks")
    assert_congested(client.delete(DEVICES + device_id, headers=headers), "callbacks")
    assert snapshot(svc) == before
    assert client.get(DEVICES + device_id, headers=headers).json["pendingCommands"] == 3


def test_enos_cancel_all_waits_too_but_single_cancels_do_not(
    svc, client, headers, app_id, device_id, pending
):
    fill(svc, QUEUE_REVOCATIONS, LIMIT + 1)
    before = snapshot(svc)
    url = f"{ENOS}?action=cancel&orgId={app_id}&assetId={device_id}"
    refused = client.post(url, headers=headers)
    assert refused.status_code == 200  # EnOS answers every outcome with HTTP 200
    assert (refused.json["code"], refused.json["data"]) == (99503, None)
    assert refused.json["submsg"].startswith("The revocations queue holds 4 messages (limit 3)")
    assert refused.headers["Retry-After"] == "5"
    assert snapshot(svc) == before

    one = client.post(f"{url}&commandId={pending[0]}", headers=headers)
    assert [c["state"] for c in one.json["data"]] == [2]  # one cancel adds no revocation work

    svc.redis.delete(QUEUE_REVOCATIONS)
    done = client.post(url, headers=headers)
    assert done.json["code"] == 0
    assert sorted(c["commandId"] for c in done.json["data"]) == sorted(pending[1:])


def test_a_reading_with_room_is_reused_for_a_while_and_one_over_the_limit_never(
    svc, client, headers, device_id, pending
):
    """BACKPRESSURE_REUSE_SECONDS: a process answers from its last reading while it found room
    (a queue can pass its limit by what is accepted meanwhile); /readyz reads afresh, and a
    reading over a limit is not reused, so the next call reads again."""
    svc.config = svc.config.with_(backpressure_reuse_seconds=3600)
    assert client.post(TASKS, json={"deviceId": device_id}, headers=headers).status_code == 201
    fill(svc, QUEUE_REVOCATIONS, LIMIT + 1)
    reused = client.post(TASKS, json={"deviceId": device_id}, headers=headers)
    assert reused.status_code == 201  # the reading from before the backlog, still in its time
    assert client.get("/readyz").json["checks"]["queues"]["revocations"]["depth"] == LIMIT + 3
    refused = client.post(TASKS, json={"deviceId": device_id}, headers=headers)
    assert_congested(refused, "revocations")  # /readyz's reading replaced the old one
    svc.redis.delete(QUEUE_REVOCATIONS)
    assert client.post(TASKS, json={"deviceId": device_id}, headers=headers).status_code == 201


def test_no_reuse_reads_on_every_call(svc, client, headers, device_id, pending):
    svc.config = svc.config.with_(backpressure_reuse_seconds=0)
    assert client.post(TASKS, json={"deviceId": device_id}, headers=headers).status_code == 201
    fill(svc, QUEUE_REVOCATIONS, LIMIT + 1)
    assert_congested(
        client.post(TASKS, json={"deviceId": device_id}, headers=headers), "revocations"
    )
