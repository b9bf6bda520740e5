"""The EnOS connect-service v2.1 command contract: envelope, Command structure, cancel, get,
search and invokeService, on the same core as the OceanConnect dialect."""

from __future__ import annotations

import json
import re

import pytest

from app.schemas.enos import command_answer
from devcmd.domain import southbound
from devcmd.store import keys

REG = "/iocm/app/reg/v1.1.0/deviceCredentials"
CMDS = "/iocm/app/cmd/v1.4.0/deviceCommands"
ENOS = "/connect-service/v2.1/commands"
DEVICE = "orgId=app-a&assetId=asset-1"
COMMAND_FIELDS = {
    "commandId", "orgId", "productKey", "deviceKey", "assetId", "createTime", "createLocalTime",
    "createLocaltime", "commandType", "commandName", "timeout", "pendingTtl", "state",
    "tslIdentifier", "inputData", "outputData",
}  # fmt: skip


@pytest.fixture
def device(client, headers) -> dict:
    body = {"nodeId": "n1", "assetId": "asset-1", "productKey": "pk", "deviceKey": "dk"}
    return client.post(REG, json=body, headers=headers).json


def oc_create(client, headers, device_id, method="ON", paras=None, **extra) -> str:
    command = {"serviceId": "Light", "method": method, "paras": paras or {}}
    body = {"deviceId": device_id, "command": command} | extra
    return client.post(CMDS, json=body, headers=headers).json["commandId"]


def enos(client, headers, action, query=DEVICE, method="POST", **kwargs):
    reply = client.open(f"{ENOS}?action={action}&{query}", method=method, headers=headers, **kwargs)
    assert reply.status_code == 200, reply.data
    return reply.json


def oc_status(client, headers, command_id) -> str:
    listed = client.get(CMDS, headers=headers).json["data"]
    return next(c["status"] for c in listed if c["commandId"] == command_id)


def test_success_envelope_and_the_command_structure(client, headers, device):
    command_id = oc_create(client, headers, device["deviceId"], paras={"level": 3})
    answer = enos(client, headers, "get", f"{DEVICE}&commandId={command_id}", method="GET")
    assert set(answer) == {"code", "msg", "submsg", "requestId", "data"}
    assert (answer["code"], answer["msg"], answer["submsg"]) == (0, "Success", None)
    assert re.fullmatch(r"[0-9a-f]{32}", answer["requestId"])
    command = answer["data"]
    assert set(command) == COMMAND_FIELDS
    assert (command["orgId"], command["assetId"]) == ("app-a", "asset-1")
    assert (command["productKey"], command["deviceKey"]) == ("pk", "dk")
    assert isinstance(command["createTime"], int)
    assert command["createTime"] == command["createLocalTime"] == command["createLocaltime"]
    assert (command["commandType"], command["state"], command["pendingTtl"]) == (2, 1, 172800)
    assert command["tslIdentifier"] == command["commandName"]["defaultValue"] == "ON"
    assert (command["inputData"], command["outputData"]) == ({"level": 3}, None)
    again = enos(client, headers, "get", f"{DEVICE}&commandId={command_id}", method="GET")
    assert again["requestId"] != answer["requestId"]


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("PENDING", 1), ("CANCELED", 2), ("EXPIRED", 3), ("SENT", 4), ("DELIVERED", 4),
        ("SUCCESSFUL", 5), ("FAILED", 6), ("TIMEOUT", 7),
    ],
)  # fmt: skip
def test_state_is_mapped_from_our_status(status, state):
    record = {
        "commandId": "c", "appId": "a", "deviceId": "d", "serviceId": "s", "method": "m",
        "paras": {}, "expireTime": 60, "creationTime": 1, "status": status,
    }  # fmt: skip
    assert command_answer(record, {"deviceId": "d"}, 30)["state"] == state


def test_device_outcomes_show_as_states_with_output_data(client, svc, headers, device):
    device_id = device["deviceId"]
    done, failed, sent = (oc_create(client, headers, device_id) for _ in range(3))
    southbound.fetch(svc, "app-a", device_id, 3)
    southbound.finish(svc, "app-a", device_id, done, "SUCCESSFUL", {"temperature": 21})
    southbound.finish(svc, "app-a", device_id, failed, "FAILED", "overheated")
    found = {c["commandId"]: c for c in enos(client, headers, "search")["data"]}
    assert (found[done]["state"], found[done]["outputData"]) == (5, {"temperature": 21})
    assert (found[failed]["state"], found[failed]["outputData"]) == (6, "overheated")
    assert found[sent]["state"] == 4


def test_cancel_one_cached_command(client, headers, device):
    command_id = oc_create(client, headers, device["deviceId"])
    answer = enos(client, headers, "cancel", f"{DEVICE}&commandId={command_id}")
    assert [(c["commandId"], c["state"]) for c in answer["data"]] == [(command_id, 2)]
    assert oc_status(client, headers, command_id) == "CANCELED"
    again = enos(client, headers, "cancel", f"{DEVICE}&commandId={command_id}")
    assert again["code"] == 99409
    assert "CANCELED" in again["submsg"]
    assert enos(client, headers, "cancel", f"{DEVICE}&commandId=nope")["code"] == 99404


def test_a_command_of_another_device_is_not_found(client, headers, device):
    other = client.post(REG, json={"nodeId": "n2"}, headers=headers).json["deviceId"]
    command_id = oc_create(client, headers, other)
    assert enos(client, headers, "cancel", f"{DEVICE}&commandId={command_id}")["code"] == 99404
    got = enos(client, headers, "get", f"{DEVICE}&commandId={command_id}", method="GET")
    assert got["code"] == 11404
    assert oc_status(client, headers, command_id) == "PENDING"


def test_cancel_all_answers_exactly_the_cached_commands_it_cancelled(client, svc, headers, device):
    device_id = device["deviceId"]
    svc.config = svc.config.with_(sweep_batch=2)  # several atomic batches in one request
    taken = oc_create(client, headers, device_id)
    southbound.fetch(svc, "app-a", device_id, 1)
    cached = {oc_create(client, headers, device_id) for _ in range(5)}
    other = client.post(REG, json={"nodeId": "n2"}, headers=headers).json["deviceId"]
    elsewhere = oc_create(client, headers, other)
    answer = enos(client, headers, "cancel", data=b"")
    assert {c["commandId"] for c in answer["data"]} == cached
    assert {c["state"] for c in answer["data"]} == {2}
    assert oc_status(client, headers, taken) == "SENT"
    assert oc_status(client, headers, elsewhere) == "PENDING"
    assert enos(client, headers, "cancel")["data"] == []
    later = oc_create(client, headers, device_id)
    assert oc_status(client, headers, later) == "PENDING"
    for query in ("", f"?deviceId={device_id}"):  # synchronous: never listed as a task
        tasks = client.get(f"/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks{query}", headers=headers)
        assert tasks.json["pagination"]["totalSize"] == 0


def test_cancel_all_records_one_outbox_event_per_batch_for_callbacks(client, svc, headers, device):
    device_id = device["deviceId"]
    ids = [oc_create(client, headers, device_id, callbackUrl="http://127.0.0.1:9/cb")]
    ids.append(oc_create(client, headers, device_id))
    enos(client, headers, "cancel")
    (event,) = svc.redis.lrange(keys.outbox("app-a", device_id), 0, -1)
    assert event.startswith("CANCELED ")
    assert event.rsplit(" ", 1)[1].split(",") == ids


def test_cancel_all_above_the_limit_changes_nothing(client, svc, headers, device):
    device_id = device["deviceId"]
    svc.config = svc.config.with_(enos_cancel_limit=3)
    ids = [oc_create(client, headers, device_id) for _ in range(4)]
    answer = enos(client, headers, "cancel")
    assert answer["code"] == 99413
    assert "deviceCommandCancelTasks" in answer["submsg"]
    assert {oc_status(client, headers, c) for c in ids} == {"PENDING"}
    assert len(southbound.fetch(svc, "app-a", device_id, 10)) == 4  # not fenced off


def test_cancel_and_invoke_need_post(client, headers, device):
    for action in ("cancel", "invokeService"):
        answer = enos(client, headers, action, f"{DEVICE}&serviceId=s", method="GET")
        assert answer["code"] == 99400
        assert "POST" in answer["submsg"]


def test_get_needs_a_command_id(client, headers, device):
    answer = enos(client, headers, "get", method="GET")
    assert answer["code"] == 99400
    assert answer["submsg"].startswith("commandId:")


def test_search_pages_newest_first_with_enos_defaults(client, headers, device):
    ids = [oc_create(client, headers, device["deviceId"]) for _ in range(5)]
    first = enos(client, headers, "search")
    assert first["pagination"] == {"pageNo": 1, "pageSize": 100, "totalSize": 5}
    nulls = {"expression": None, "pagination": None, "projection": None}
    assert enos(client, headers, "search", json=nulls)["pagination"] == first["pagination"]
    assert [c["commandId"] for c in first["data"]] == ids[::-1]
    body = {"pagination": {"pageNo": 2, "pageSize": 2}}
    second = enos(client, headers, "search", json=body)
    assert [c["commandId"] for c in second["data"]] == ids[::-1][2:4]
    beyond = enos(client, headers, "search", json={"pagination": {"pageNo": 9, "pageSize": 2}})
    assert (beyond["data"], beyond["pagination"]["totalSize"]) == ([], 5)


def test_search_expression_filters(client, headers, device):
    device_id = device["deviceId"]
    on = [oc_create(client, headers, device_id, method="TurnOn") for _ in range(3)]
    off = oc_create(client, headers, device_id, method="TurnOff")
    enos(client, headers, "cancel", f"{DEVICE}&commandId={on[0]}")

    def found(expression: str, size: int = 2) -> tuple[int, set[str]]:
        body = {"expression": expression, "pagination": {"pageSize": size}}
        answer = enos(client, headers, "search", json=body)
        assert answer["code"] == 0, answer
        return answer["pagination"]["totalSize"], {c["commandId"] for c in answer["data"]}

    assert found("state = 2") == (1, {on[0]})
    assert found("state = 1", size=10) == (3, {on[1], on[2], off})
    assert found('commandName.en_US like "off"') == (1, {off})
    assert found("commandName.defaultValue like 'turn%n'")[0] == 3
    assert found('commandName.en_US like "urn_f"') == (1, {off})
    assert found('state = 1 AND commandName.zh_CN like "On"', size=1)[0] == 2
    assert found("state = 1 and state = 2") == (0, set())
    window = 'createTime >= "2000-01-01 00:00:00" and createTime < "2999-01-01 00:00:00"'
    assert found(window)[0] == 4
    assert found('createTime > "2999-01-01 00:00:00"') == (0, set())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"expression": "state = 9"}, "expression"),
        ({"expression": "status = 1"}, "expression"),
        ({"expression": "state = 1 OR state = 2"}, "expression"),
        ({"expression": 'createTime > "yesterday"'}, "expression"),
        ({"pagination": {"pageNo": 0}}, "pagination.pageNo"),
        ({"pagination": {"pageSize": 1001}}, "pagination.pageSize"),
        ({"pagination": {"pageSize": "5"}}, "pagination.pageSize"),
        ({"projection": "commandId"}, "projection"),
    ],
)
def test_bad_search_bodies_are_99400_naming_the_field(client, headers, device, body, field):
    answer = enos(client, headers, "search", json=body)
    assert (answer["code"], answer["data"]) == (99400, None)
    assert answer["submsg"].startswith(f"{field}:")


def test_search_projection_trims_each_command(client, headers, device):
    oc_create(client, headers, device["deviceId"])
    body = {"projection": ["commandId", "state", "commandName.defaultValue", "unknown"]}
    (command,) = enos(client, headers, "search", json=body)["data"]
    assert set(command) == {"commandId", "state", "commandName"}
    assert command["commandName"] == {"defaultValue": "ON"}


def test_invoke_service_queues_a_cached_command_seen_by_oceanconnect(client, headers, device):
    query = f"{DEVICE}&serviceId=reboot&pendingTtl=600&timeout=10"
    answer = enos(client, headers, "invokeService", query, json={"inputData": {"delay": 5}})
    assert answer["code"] == 0
    assert set(answer["data"]) == {"commandId"}
    (command,) = client.get(CMDS, headers=headers).json["data"]
    assert command["commandId"] == answer["data"]["commandId"]
    assert command["command"] == {"serviceId": "reboot", "method": "reboot", "paras": {"delay": 5}}
    assert (command["expireTime"], command["status"]) == (600, "PENDING")
    got = enos(client, headers, "get", f"{DEVICE}&commandId={command['commandId']}")["data"]
    assert (got["pendingTtl"], got["timeout"], got["tslIdentifier"]) == (600, 10, "reboot")


def test_instant_invocation_answers_the_state_when_the_wait_ends(client, svc, headers, device):
    svc.config = svc.config.with_(enos_invoke_wait=0)
    answer = enos(client, headers, "invokeService", f"{DEVICE}&serviceId=ping", data=b"")
    assert answer["data"]["state"] == 1
    assert answer["data"]["outputData"] is None
    (command,) = client.get(CMDS, headers=headers).json["data"]
    assert command["expireTime"] == 30  # an instant command must be taken within `timeout`


@pytest.mark.parametrize(
    ("query", "body", "field"),
    [
        ("", {}, "serviceId"),
        ("&serviceId=s&pendingTtl=172801", {}, "pendingTtl"),
        ("&serviceId=s&pendingTtl=-1", {}, "pendingTtl"),
        ("&serviceId=s&timeout=0", {}, "timeout"),
        ("&serviceId=s&timeout=61", {}, "timeout"),
        ("&serviceId=s&timeout=x", {}, "timeout"),
        ("&serviceId=s&callbackUrl=ftp://x/y", {}, "callbackUrl"),
        ("&serviceId=s", {"inputData": [1]}, "inputData"),
        ("&serviceId=s", {"inputData": {"n": 2**64}}, "inputData"),
    ],
)
def test_bad_invocations_are_99400(client, headers, device, query, body, field):
    raw = json.dumps(body).encode()  # the standard library, as any client may encode it
    answer = enos(client, headers, "invokeService", DEVICE + query, data=raw)
    assert answer["code"] == 99400
    assert answer["submsg"].startswith(f"{field}:")
    assert client.get(CMDS, headers=headers).json["pagination"]["totalSize"] == 0


def test_the_cached_command_limit_is_11902(client, svc, headers, device):
    svc.config = svc.config.with_(max_pending_per_device=1)
    query = f"{DEVICE}&serviceId=s&pendingTtl=60"
    assert enos(client, headers, "invokeService", query)["code"] == 0
    assert enos(client, headers, "invokeService", query)["code"] == 11902


@pytest.mark.parametrize("raw", [b"{", b"null", b"[]", b'"x"', b"\xff\xfe"])
def test_malformed_bodies_are_99400(client, headers, device, raw):
    for action in ("search", "invokeService"):
        answer = enos(client, headers, action, f"{DEVICE}&serviceId=s", data=raw)
        assert answer["code"] == 99400


def test_unknown_actions_paths_and_methods_keep_the_envelope(client, headers, device):
    assert enos(client, headers, "setMeasurepoint")["code"] == 99400
    assert enos(client, headers, "", "orgId=app-a")["code"] == 99400
    unknown = client.post("/connect-service/v2.1/things", headers=headers)
    assert (unknown.status_code, unknown.json["code"]) == (200, 99404)
    put = client.put(f"{ENOS}?action=get&{DEVICE}", headers=headers)
    assert (put.status_code, put.json["code"]) == (200, 99400)


def test_cancel_all_lists_only_what_it_cancelled_not_what_expired(client, svc, headers, device):
    svc.config = svc.config.with_(expire_zero_grace_ms=0)  # due at once; no timer tick ran
    expired = oc_create(client, headers, device["deviceId"], expireTime=0)
    cached = oc_create(client, headers, device["deviceId"])
    assert [c["commandId"] for c in enos(client, headers, "cancel")["data"]] == [cached]
    got = enos(client, headers, "get", f"{DEVICE}&commandId={expired}", method="GET")["data"]
    assert got["state"] == 3
