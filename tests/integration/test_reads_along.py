"""A device's page of commands and a poll of a revocation task by taskId read in admission's
round trip on one server (their own step on a cluster): the same answers as a read of its own,
nothing of them when admission refuses, and a query that does not parse is still refused in the
documented order (authentication first)."""

from __future__ import annotations

import pytest
from redis.cluster import RedisCluster

from app import create_app
from devcmd.domain import auth, commands, revocations
from devcmd.services import Services
from devcmd.store import keys
from tests import backends
from tests.integration import test_admission
from tests.integration.test_admission import refused

pytestmark = [pytest.mark.integration, pytest.mark.backends(*backends.CLUSTERED)]
COMMANDS = "/iocm/app/cmd/v1.4.0/deviceCommands"
TASKS = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {"level": 1}}
round_trips = test_admission.round_trips  # the fixture counting round trips


@pytest.fixture
def client(svc):
    return create_app(services=svc).test_client()


@pytest.fixture
def listed(svc, app_id, device_id) -> list[str]:
    """Five commands on the device, newest first, one of them cancelled."""
    made = [commands.create(svc, app_id, device_id, COMMAND, {}) for _ in range(5)]
    commands.cancel(svc, app_id, made[1]["commandId"])
    return [c["commandId"] for c in reversed(made)]


def page(device_id: str, **more) -> dict:
    return {"deviceId": device_id, "pageNo": 0, "pageSize": 3, **more}


def other_process_answer(svc, path: str, query: dict, headers: dict):
    """The same call answered by a fresh process (its own Services: nothing cached)."""
    other = Services.from_config(svc.config)
    try:
        return (
            create_app(services=other).test_client().get(path, query_string=query, headers=headers)
        )
    finally:
        other.close()


def test_a_devices_page_is_one_round_trip_and_answers_as_a_fresh_process(
    svc, client, headers, device_id, listed, round_trips
):
    assert client.get(COMMANDS, query_string=page(device_id), headers=headers).status_code == 200
    before = round_trips[0]
    reply = client.get(COMMANDS, query_string=page(device_id), headers=headers)
    assert round_trips[0] - before == (2 if isinstance(svc.redis, RedisCluster) else 1)
    assert reply.json["pagination"] == {"pageNo": 0, "pageSize": 3, "totalSize": 5}
    assert reply.json == other_process_answer(svc, COMMANDS, page(device_id), headers).json
    second = client.get(COMMANDS, query_string=page(device_id, pageNo=1), headers=headers)
    both = reply.json["data"] + second.json["data"]
    assert sorted(c["commandId"] for c in both) == sorted(listed)
    assert sorted(c["status"] for c in both) == ["CANCELED"] + ["PENDING"] * 4
    created = [c["creationTime"] for c in both]
    assert created == sorted(created, reverse=True)


def test_pages_merged_or_filtered_read_after_admission_with_the_same_answers(
    svc, client, headers, device_id, listed
):
    for query in (
        page(device_id, status="PENDING"),
        {"pageNo": 0, "pageSize": 10},  # every device of the application
        page("not a device id"),
    ):
        reply = client.get(COMMANDS, query_string=query, headers=headers)
        assert reply.status_code == 200
        assert reply.json == other_process_answer(svc, COMMANDS, query, headers).json
    pending = client.get(COMMANDS, query_string=page(device_id, status="PENDING"), headers=headers)
    assert pending.json["pagination"]["totalSize"] == 4


def test_a_refused_call_answers_nothing_of_the_page(
    svc, client, headers, app_id, device_id, listed
):
    auth.set_rate_limit(svc, app_id, 1)
    calls = [client.get(COMMANDS, query_string=page(device_id), headers=headers) for _ in range(2)]
    assert calls[0].status_code == 200
    assert refused(calls[1]) == (403, "1010009")
    assert not any(command_id in calls[1].get_data(as_text=True) for command_id in listed)
    svc.apps.update(app_id, {"frozen": "1"})
    frozen = client.get(COMMANDS, query_string=page(device_id), headers=headers)
    assert refused(frozen) == (403, "100247")
    assert not any(command_id in frozen.get_data(as_text=True) for command_id in listed)


def test_another_applications_page_needs_its_grant(svc, client, headers, app_id, device_id, listed):
    auth.create_application(svc, app_id="app-b", secret="secret-b")
    token = auth.login(svc, "app-b", "secret-b")["accessToken"]
    b = {"app_key": "app-b", "Authorization": f"Bearer {token}"}
    own = client.get(COMMANDS, query_string=page(device_id), headers=b)
    assert own.json["pagination"]["totalSize"] == 0  # B's own device of that id: none
    acting = client.get(COMMANDS, query_string=page(device_id, appId=app_id), headers=b)
    assert refused(acting) == (403, "100217")
    auth.authorize(svc, owner=app_id, grantee="app-b")
    acting = client.get(COMMANDS, query_string=page(device_id, appId=app_id), headers=b)
    assert acting.json == client.get(COMMANDS, query_string=page(device_id), headers=headers).json
    assert acting.json["pagination"]["totalSize"] == len(listed)


def test_a_query_that_does_not_parse_is_refused_after_authentication(
    svc, client, headers, device_id
):
    bad = page(device_id, pageSize="many")
    stale = {**headers, "Authorization": "Bearer not-a-token"}
    assert refused(client.get(COMMANDS, query_string=bad, headers=stale)) == (401, "1010005")
    reply = client.get(COMMANDS, query_string=bad, headers=headers)
    assert reply.status_code == 400
    assert "pageSize" in reply.get_data(as_text=True)
    bad_task = {"taskId": "x", "pageSize": "many"}
    assert refused(client.get(TASKS, query_string=bad_task, headers=stale)) == (401, "1010005")
    assert client.get(TASKS, query_string=bad_task, headers=headers).status_code == 400


def test_a_server_that_lost_its_scripts_still_answers_the_page_and_counts_once(
    svc, client, headers, app_id, device_id, listed
):
    auth.set_rate_limit(svc, app_id, 100)
    first = client.get(COMMANDS, query_string=page(device_id), headers=headers)
    svc.redis.script_flush()
    second = client.get(COMMANDS, query_string=page(device_id), headers=headers)
    assert second.json == first.json
    left = [int(r.headers["X-RateLimit-Remaining"]) for r in (first, second)]
    assert left == [99, 98]


def test_a_task_poll_by_id_is_one_round_trip_once_its_device_is_known(
    svc, client, headers, app_id, device_id, listed, round_trips
):
    opened = client.post(TASKS, json={"deviceId": device_id}, headers=headers)
    task_id = opened.json["taskId"]
    before = round_trips[0]
    reply = client.get(TASKS, query_string={"taskId": task_id}, headers=headers)
    assert round_trips[0] - before == (2 if isinstance(svc.redis, RedisCluster) else 1)
    [task] = reply.json["data"]
    assert (task["taskId"], task["deviceId"]) == (task_id, device_id)
    assert reply.json == other_process_answer(svc, TASKS, {"taskId": task_id}, headers).json
    # A process that did not open it looks its device up once, then polls in one round trip.
    fresh = create_app(services=Services.from_config(svc.config)).test_client()
    try:
        assert (
            fresh.get(TASKS, query_string={"taskId": task_id}, headers=headers).json == reply.json
        )
        before = round_trips[0]
        fresh.get(TASKS, query_string={"taskId": task_id}, headers=headers)
        assert round_trips[0] - before == (2 if isinstance(svc.redis, RedisCluster) else 1)
    finally:
        fresh.application.extensions["devcmd"].close()


def test_a_polled_task_that_is_gone_or_anothers_is_not_found(
    svc, client, headers, app_id, device_id
):
    task_id = client.post(TASKS, json={"deviceId": device_id}, headers=headers).json["taskId"]
    auth.create_application(svc, app_id="app-b", secret="secret-b")
    token = auth.login(svc, "app-b", "secret-b")["accessToken"]
    b = {"app_key": "app-b", "Authorization": f"Bearer {token}"}
    theirs = client.get(TASKS, query_string={"taskId": task_id}, headers=b)
    assert (theirs.json["pagination"]["totalSize"], theirs.json["data"]) == (0, [])
    # Its records removed (as retention does) after this process remembered its device.
    assert client.get(TASKS, query_string={"taskId": task_id}, headers=headers).json["data"]
    device = svc.revocations.device_of(app_id, task_id)
    svc.redis.delete(keys.task(app_id, device, task_id))
    assert revocations.get_read(svc, app_id, task_id) is not None  # still remembered
    gone = client.get(TASKS, query_string={"taskId": task_id}, headers=headers)
    assert gone.json["pagination"]["totalSize"] == 0
