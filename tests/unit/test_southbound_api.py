"""The device API's contract: HTTP Basic deviceId:psk, queue order, transitions and their errors."""

from __future__ import annotations

import base64

import pytest

CMDS = "/iocm/app/cmd/v1.4.0/deviceCommands"
TASKS = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"


def basic(device_id: str, psk: str) -> dict[str, str]:
    token = base64.b64encode(f"{device_id}:{psk}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def device(client, headers) -> dict:
    reply = client.post(
        "/iocm/app/reg/v1.1.0/deviceCredentials", json={"nodeId": "sb"}, headers=headers
    )
    return reply.json | {"auth": basic(reply.json["deviceId"], reply.json["psk"])}


def queue(client, headers, device_id, count) -> list[str]:
    body = {"deviceId": device_id, "command": {"serviceId": "Light", "method": "ON", "paras": {}}}
    return [client.post(CMDS, json=body, headers=headers).json["commandId"] for _ in range(count)]


def path(device, command_id="", action=""):
    base = f"/southbound/v1/devices/{device['deviceId']}/commands"
    return f"{base}/{command_id}/{action}" if command_id else base


def test_fetch_gives_commands_in_queue_order_and_marks_them_sent(client, headers, device):
    ids = queue(client, headers, device["deviceId"], 4)
    first = client.get(path(device) + "?max=3", headers=device["auth"])
    assert first.status_code == 200
    assert [c["commandId"] for c in first.json["commands"]] == ids[:3]
    assert set(first.json["commands"][0]) == {"commandId", "serviceId", "method", "paras"}
    rest = client.get(path(device), headers=device["auth"])
    assert [c["commandId"] for c in rest.json["commands"]] == ids[3:]
    listed = client.get(f"{CMDS}?deviceId={device['deviceId']}", headers=headers).json["data"]
    assert {c["status"] for c in listed} == {"SENT"}
    assert {c["issuedTimes"] for c in listed} == {1}
    assert all(c["platformIssuedTime"] for c in listed)


@pytest.mark.parametrize(
    "auth",
    [
        {},
        {"Authorization": "Basic !!!"},
        {"Authorization": "Bearer token"},
    ],
)
def test_missing_or_malformed_credentials_are_401(client, device, auth):
    reply = client.get(path(device), headers=auth)
    assert (reply.status_code, reply.json["error_code"]) == (401, "200401")
    assert reply.headers["WWW-Authenticate"].startswith("Basic")


def test_wrong_psk_and_another_devices_path_are_401(client, headers, device):
    other = client.post(
        "/iocm/app/reg/v1.1.0/deviceCredentials", json={"nodeId": "x"}, headers=headers
    )
    wrong = basic(device["deviceId"], "0" * 32)
    assert client.get(path(device), headers=wrong).status_code == 401
    borrowed = basic(other.json["deviceId"], other.json["psk"])
    assert client.get(path(device), headers=borrowed).status_code == 401


def test_ack_then_result_then_nothing_more(client, headers, device):
    (command_id,) = queue(client, headers, device["deviceId"], 1)
    client.get(path(device), headers=device["auth"])
    assert client.post(path(device, command_id, "ack"), headers=device["auth"]).status_code == 204
    assert client.post(path(device, command_id, "ack"), headers=device["auth"]).status_code == 204
    done = client.post(
        path(device, command_id, "result"),
        json={"resultCode": "SUCCESSFUL", "resultDetail": {"level": 3}},
        headers=device["auth"],
    )
    assert done.status_code == 204
    again = client.post(
        path(device, command_id, "result"), json={"resultCode": "FAILED"}, headers=device["auth"]
    )
    assert (again.status_code, again.json["error_code"]) == (409, "200409")
    command = client.get(f"{CMDS}?deviceId={device['deviceId']}", headers=headers).json["data"][0]
    assert command["status"] == "SUCCESSFUL"
    assert command["result"] == {"resultCode": "SUCCESSFUL", "resultDetail": {"level": 3}}
    assert command["deliveredTime"]
    assert command["executeTime"]


def test_a_cancelled_command_cannot_be_acknowledged(client, headers, device):
    (command_id,) = queue(client, headers, device["deviceId"], 1)
    client.put(f"{CMDS}/{command_id}", json={"status": "CANCELED"}, headers=headers)
    reply = client.post(path(device, command_id, "ack"), headers=device["auth"])
    assert (reply.status_code, reply.json["error_code"]) == (409, "200409")
    assert "CANCELED" in reply.json["error_desc"]
    assert client.get(path(device), headers=device["auth"]).json["commands"] == []


def test_a_delivered_command_cannot_be_cancelled(client, headers, device):
    (command_id,) = queue(client, headers, device["deviceId"], 1)
    client.get(path(device), headers=device["auth"])
    client.post(path(device, command_id, "ack"), headers=device["auth"])
    reply = client.put(f"{CMDS}/{command_id}", json={"status": "CANCELED"}, headers=headers)
    assert (reply.status_code, reply.json["error_code"]) == (409, "100435")


def test_commands_fenced_by_a_task_are_never_handed_out(client, headers, device):
    fenced = queue(client, headers, device["deviceId"], 5)
    opened = client.post(TASKS, json={"deviceId": device["deviceId"]}, headers=headers)
    assert opened.status_code == 201
    later = queue(client, headers, device["deviceId"], 2)
    fetched = client.get(path(device) + "?max=100", headers=device["auth"]).json["commands"]
    assert [c["commandId"] for c in fetched] == later
    assert not set(fenced) & {c["commandId"] for c in fetched}


def test_unknown_command_and_bad_bodies(client, headers, device):
    unknown = client.post(path(device, "nope", "ack"), headers=device["auth"])
    assert (unknown.status_code, unknown.json["error_code"]) == (404, "100434")
    (command_id,) = queue(client, headers, device["deviceId"], 1)
    for body in ({}, {"resultCode": "DONE"}, {"resultCode": 1}):
        reply = client.post(path(device, command_id, "result"), json=body, headers=device["auth"])
        assert (reply.status_code, reply.json["error_code"]) == (400, "100022")
    for query in ("max=0", "max=101", "max=x"):
        reply = client.get(f"{path(device)}?{query}", headers=device["auth"])
        assert (reply.status_code, reply.json["error_code"]) == (400, "100022")
