"""The EnOS dialect on a real Redis: one core for both dialects, the same callbacks whichever
dialect creates or cancels a command, and a synchronous cancel-all that races delivery safely."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest
from standardwebhooks.webhooks import Webhook

from app import create_app
from devcmd.domain import commands, delivery, notifications, revocations, southbound
from devcmd.store import keys
from tests import backends
from tests.integration import test_admission

pytestmark = [pytest.mark.integration, pytest.mark.backends(*backends.CLUSTERED)]
REG = "/iocm/app/reg/v1.1.0/deviceCredentials"
CMDS = "/iocm/app/cmd/v1.4.0/deviceCommands"
TASKS = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"
ENOS = "/connect-service/v2.1/commands"
DEVICE = "orgId=app-a&productKey=pk&deviceKey=dk"
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {"level": 1}}
round_trips = test_admission.round_trips  # the fixture counting round trips


@pytest.fixture
def client(svc):
    return create_app(services=svc).test_client()


@pytest.fixture
def device_id(client, headers) -> str:
    body = {"nodeId": "meter-1", "productKey": "pk", "deviceKey": "dk", "assetId": "asset-1"}
    return client.post(REG, json=body, headers=headers).json["deviceId"]


@pytest.fixture
def sender():
    pool = delivery.Sender(concurrency=4)
    yield pool
    pool.close()


def enos(client, headers, action, query="", **kwargs) -> dict:
    reply = client.post(f"{ENOS}?action={action}&{DEVICE}{query}", headers=headers, **kwargs)
    assert reply.status_code == 200
    return reply.json


def ids_of(answer: dict) -> list[str]:
    return [command["commandId"] for command in answer["data"]]


def invoke(client, headers, query: str, input_data: dict) -> dict:
    body = {"inputData": input_data}
    return enos(client, headers, "invokeService", query, json=body)["data"]


def oc_create(client, headers, device_id, url) -> str:
    body = {
        "deviceId": device_id,
        "command": {"serviceId": "Light", "method": "ON", "paras": {"level": 1}},
        "callbackUrl": url,
    }
    return client.post(CMDS, json=body, headers=headers).json["commandId"]


def oc_statuses(client, headers) -> dict[str, str]:
    return {c["commandId"]: c["status"] for c in client.get(CMDS, headers=headers).json["data"]}


def delivered_callbacks(svc, device_id, receiver, sender) -> dict[str, dict]:
    """Drain the device's outbox and deliver every notification to the real receiver."""
    notifications.flush(svc, "app-a", device_id)
    refs = []
    for raw in reversed(svc.broker_redis.lrange("callbacks", 0, -1)):
        message = json.loads(raw)
        if message["headers"]["task"] == "devcmd.notifications.deliver":
            refs += json.loads(base64.b64decode(message["body"]))[0][0]
    delivery.deliver(svc, sender, refs)
    verifier = Webhook(svc.apps.get("app-a")["webhookSecret"])
    found = {}
    for headers, body in receiver.received:
        lowered = {k.lower(): v for k, v in headers.items()}
        assert verifier.verify(receiver.raw[lowered["webhook-id"]], lowered) == body
        assert lowered["webhook-id"] == f"msg_{body['commandId']}_{body['result']['resultCode']}"
        found[body["commandId"]] = body
    return found


def cancelled_body(device_id: str, command_id: str) -> dict:
    result = {"resultCode": "CANCELED", "resultDetail": None}
    return {"deviceId": device_id, "commandId": command_id, "result": result}


def test_oceanconnect_commands_are_cancelled_through_enos_with_the_same_callbacks(
    svc, client, headers, device_id, receiver, sender
):
    by_oc, by_id, by_all = (oc_create(client, headers, device_id, receiver.url) for _ in range(3))
    got = enos(client, headers, "get", f"&commandId={by_id}")["data"]
    assert (got["state"], got["assetId"], got["inputData"]) == (1, "asset-1", {"level": 1})
    client.put(f"{CMDS}/{by_oc}", json={"status": "CANCELED"}, headers=headers)
    assert ids_of(enos(client, headers, "cancel", f"&commandId={by_id}")) == [by_id]
    assert ids_of(enos(client, headers, "cancel")) == [by_all]
    assert set(oc_statuses(client, headers).values()) == {"CANCELED"}
    callbacks = delivered_callbacks(svc, device_id, receiver, sender)
    assert callbacks == {c: cancelled_body(device_id, c) for c in (by_oc, by_id, by_all)}


def test_enos_commands_are_cancelled_through_oceanconnect_with_the_same_callbacks(
    svc, client, headers, device_id, receiver, sender
):
    query = f"&serviceId=reboot&pendingTtl=600&callbackUrl={receiver.url}"
    by_put, by_task, by_enos = (invoke(client, headers, query, {})["commandId"] for _ in range(3))
    listed = client.get(CMDS, headers=headers).json["data"]
    assert {c["command"]["serviceId"] for c in listed} == {"reboot"}
    assert {c["callbackUrl"] for c in listed} == {receiver.url}
    client.put(f"{CMDS}/{by_put}", json={"status": "CANCELED"}, headers=headers)
    enos(client, headers, "cancel", f"&commandId={by_enos}")
    task = client.post(TASKS, json={"deviceId": device_id}, headers=headers).json
    assert (task["status"], task["totalCount"]) == ("WAITING", 1)
    while not revocations.sweep(svc, "app-a", device_id, task["taskId"]).done:
        pass
    for command_id in (by_put, by_task, by_enos):
        assert enos(client, headers, "get", f"&commandId={command_id}")["data"]["state"] == 2
    callbacks = delivered_callbacks(svc, device_id, receiver, sender)
    assert callbacks == {c: cancelled_body(device_id, c) for c in (by_put, by_task, by_enos)}


def test_an_instant_invocation_answers_the_devices_output(svc, client, headers, device_id):
    def device() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for command in southbound.fetch(svc, "app-a", device_id, 1):
                command_id, output = command["commandId"], {"echo": command["paras"]["ping"]}
                southbound.ack(svc, "app-a", device_id, command_id)
                southbound.finish(svc, "app-a", device_id, command_id, "SUCCESSFUL", output)
                return
            time.sleep(0.02)

    worker = threading.Thread(target=device)
    worker.start()
    answer = invoke(client, headers, "&serviceId=ping&timeout=5", {"ping": 7})
    worker.join()
    assert (answer["state"], answer["outputData"]) == (5, {"echo": 7})


def test_cancel_all_racing_a_fetching_device_gives_every_command_one_fate(
    svc, client, headers, device_id
):
    """sweep_batch is 7 here: the cancel-all runs many atomic batches while the device fetches."""
    ids = {oc_create(client, headers, device_id, None) for _ in range(150)}
    sent: list[str] = []
    stop = threading.Event()

    def device() -> None:
        while not stop.is_set():
            sent.extend(c["commandId"] for c in southbound.fetch(svc, "app-a", device_id, 3))

    worker = threading.Thread(target=device)
    worker.start()
    time.sleep(0.01)
    cancelled = ids_of(enos(client, headers, "cancel"))
    stop.set()
    worker.join()
    assert not set(cancelled) & set(sent)
    assert set(cancelled) | set(sent) == ids
    assert len(cancelled) == len(set(cancelled))
    statuses = oc_statuses(client, headers)
    assert {statuses[c] for c in cancelled} <= {"CANCELED"}
    assert {statuses[c] for c in sent} <= {"SENT"}


def test_only_an_opted_in_sweep_returns_ids(svc, client, headers, device_id):
    for _ in range(3):
        oc_create(client, headers, device_id, None)
    opened = revocations.open_task(svc, "app-a", device_id)
    lean = svc.revocations.sweep_batch("app-a", device_id, opened["taskId"], 1, 2)
    assert (lean.cancelled_now, lean.ids) == (2, ())
    rest = svc.revocations.sweep_batch("app-a", device_id, opened["taskId"], 2, 2, with_ids=True)
    assert rest.done
    assert len(rest.ids) == 1
    assert svc.redis.zcard(keys.pending("app-a", device_id)) == 0


def test_cancel_all_above_the_limit_leaves_the_backlog_to_a_task(svc, client, headers, device_id):
    svc.config = svc.config.with_(enos_cancel_limit=5)
    ids = {oc_create(client, headers, device_id, None) for _ in range(6)}
    answer = enos(client, headers, "cancel")
    assert answer["code"] == 99413
    assert svc.redis.hget(keys.device("app-a", device_id), "fence") in (None, "0")
    assert set(oc_statuses(client, headers).values()) == {"PENDING"}
    assert {c["commandId"] for c in southbound.fetch(svc, "app-a", device_id, 10)} == ids


def search(client, headers, expression: str, page_no: int = 1, size: int = 1) -> dict:
    body = {"expression": expression, "pagination": {"pageNo": page_no, "pageSize": size}}
    return enos(client, headers, "search", json=body)


def test_a_state_search_costs_an_unfiltered_pages_round_trips_with_the_scans_answers(
    svc, client, headers, device_id, round_trips
):
    """Over more commands than one scan chunk (SCAN_CHUNK), a `state` condition reads the
    per-status indexes: no more round trips than a page without conditions, where a scan
    of the window paid two per chunk. Its answers are the scan's, which a name condition that
    matches every command (`like "%"`) still takes."""
    made = [commands.create(svc, "app-a", device_id, COMMAND, {}) for _ in range(2300)]
    sent = southbound.fetch(svc, "app-a", device_id, 300)
    for command in sent[:100]:
        southbound.ack(svc, "app-a", device_id, command["commandId"])
    for command in sent[:50]:
        southbound.finish(svc, "app-a", device_id, command["commandId"], "SUCCESSFUL", {})
    commands.cancel(svc, "app-a", made[-1]["commandId"])
    task = revocations.open_task(svc, "app-a", device_id)
    svc.revocations.sweep_batch("app-a", device_id, task["taskId"], 1, 400)  # status debt
    first = search(client, headers, "state = 2")  # pays the status debt, once
    assert first == search(client, headers, 'state = 2 AND commandName.en like "%"') | {
        "requestId": first["requestId"]
    }
    before = round_trips[0]
    search(client, headers, "", 1, 10)
    unfiltered = round_trips[0] - before
    for state, page_no, size in [(1, 1, 10), (1, 3, 1000), (4, 1, 100), (2, 2, 300), (5, 9, 10)]:
        before = round_trips[0]
        answer = search(client, headers, f"state = {state}", page_no, size)
        assert round_trips[0] - before <= unfiltered, (state, page_no, size)
        expression = f'state = {state} AND commandName.en like "%"'
        scanned = search(client, headers, expression, page_no, size)
        assert answer == scanned | {"requestId": answer["requestId"]}
    totals = [
        search(client, headers, f"state = {s}")["pagination"]["totalSize"] for s in range(1, 8)
    ]
    assert totals == [1599, 401, 0, 250, 50, 0, 0]
