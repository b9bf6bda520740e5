"""The OceanConnect wire contract: paths, status codes, field names, time format, error envelope."""

from __future__ import annotations

import re

import pytest

from tests.unit.conftest import login_headers

CMDS = "/iocm/app/cmd/v1.4.0/deviceCommands"
TASKS = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"
TIME = re.compile(r"^\d{8}T\d{6}Z$")
COMMAND_FIELDS = {
    "commandId", "appId", "deviceId", "command", "callbackUrl", "expireTime", "status", "result",
    "creationTime", "executeTime", "platformIssuedTime", "deliveredTime", "issuedTimes",
    "maxRetransmit",
}  # fmt: skip


def create(client, headers, device_id, **extra):
    body = {"deviceId": device_id, "command": {"serviceId": "Light", "method": "ON", "paras": {}}}
    return client.post(CMDS, json=body | extra, headers=headers)


def test_login_answers_the_oceanconnect_token_shape(client, svc):
    headers = login_headers(client, svc, "app-x")
    reply = client.post(
        "/iocm/app/sec/v1.1.0/login", data={"appId": "app-x", "secret": "app-x-secret"}
    )
    assert reply.status_code == 200
    assert reply.json["tokenType"] == "bearer"
    assert reply.json["expiresIn"] == 3600
    assert reply.json["scope"] == "default"
    assert headers["Authorization"].split()[1] != reply.json["accessToken"]


def test_several_tokens_of_one_application_stay_valid(client, svc, headers, device_id):
    reply = client.post(
        "/iocm/app/sec/v1.1.0/login", data={"appId": "app-a", "secret": "app-a-secret"}
    )
    newer = {"app_key": "app-a", "Authorization": f"Bearer {reply.json['accessToken']}"}
    assert create(client, headers, device_id).status_code == 201
    assert create(client, newer, device_id).status_code == 201


def test_wrong_secret_and_missing_login_parameters(client, svc, headers):
    wrong = client.post("/iocm/app/sec/v1.1.0/login", data={"appId": "app-a", "secret": "nope"})
    assert (wrong.status_code, wrong.json["error_code"]) == (401, "100208")
    missing = client.post("/iocm/app/sec/v1.1.0/login", data={"appId": "app-a"})
    assert (missing.status_code, missing.json["error_code"]) == (400, "102202")


def test_refresh_rotates_and_logout_revokes(client, svc):
    first = client.post("/iocm/app/sec/v1.1.0/login", data={"appId": "r", "secret": "s"})
    assert first.status_code == 401
    login_headers(client, svc, "r")
    tokens = client.post(
        "/iocm/app/sec/v1.1.0/login", data={"appId": "r", "secret": "r-secret"}
    ).json
    body = {"appId": "r", "secret": "r-secret", "refreshToken": tokens["refreshToken"]}
    refreshed = client.post("/iocm/app/sec/v1.1.0/refreshToken", json=body)
    assert refreshed.status_code == 200
    again = client.post("/iocm/app/sec/v1.1.0/refreshToken", json=body)
    assert (again.status_code, again.json["error_code"]) == (401, "1010005")
    token = refreshed.json["accessToken"]
    out = client.post("/iocm/app/sec/v1.1.0/logout", json={"accessToken": token})
    assert out.status_code == 204
    after = client.get(CMDS, headers={"app_key": "r", "Authorization": f"Bearer {token}"})
    assert (after.status_code, after.json["error_code"]) == (401, "1010005")


@pytest.mark.parametrize(
    ("headers_", "status", "code"),
    [
        ({}, 400, "100220"),
        ({"app_key": "app-a"}, 401, "1010005"),
        ({"app_key": "app-a", "Authorization": "Bearer forged"}, 401, "1010005"),
        ({"app_key": "app-a", "Authorization": "Basic abc"}, 401, "1010005"),
    ],
)
def test_authentication_failures(client, headers, headers_, status, code):
    reply = client.get(CMDS, headers=headers_)
    assert (reply.status_code, reply.json["error_code"]) == (status, code)


def test_token_of_one_app_with_app_key_of_another_is_refused(client, svc, headers):
    login_headers(client, svc, "app-b")
    forged = {"app_key": "app-b", "Authorization": headers["Authorization"]}
    reply = client.get(CMDS, headers=forged)
    assert (reply.status_code, reply.json["error_code"]) == (401, "1010005")


def test_acting_for_another_app_needs_a_grant(client, svc, headers):
    login_headers(client, svc, "app-b")
    refused = client.get(CMDS + "?appId=app-b", headers=headers)
    assert (refused.status_code, refused.json["error_code"]) == (403, "100217")
    unknown = client.get(CMDS + "?appId=ghost", headers=headers)
    assert (unknown.status_code, unknown.json["error_code"]) == (403, "100203")
    svc.apps.grant("app-b", "app-a")
    assert client.get(CMDS + "?appId=app-b", headers=headers).status_code == 200


def test_create_command_answers_201_with_every_field(client, headers, device_id):
    reply = create(client, headers, device_id, callbackUrl="http://127.0.0.1:9/cb", maxRetransmit=2)
    assert reply.status_code == 201
    assert set(reply.json) == COMMAND_FIELDS
    assert reply.json["status"] == "PENDING"
    assert reply.json["expireTime"] == 172800
    assert reply.json["maxRetransmit"] == 2
    assert reply.json["command"] == {"serviceId": "Light", "method": "ON", "paras": {}}
    assert TIME.match(reply.json["creationTime"])
    assert reply.json["executeTime"] is None


def test_query_commands_pages_newest_first(client, headers, device_id):
    ids = [create(client, headers, device_id).json["commandId"] for _ in range(5)]
    page0 = client.get(f"{CMDS}?deviceId={device_id}&pageNo=0&pageSize=2", headers=headers).json
    page2 = client.get(f"{CMDS}?deviceId={device_id}&pageNo=2&pageSize=2", headers=headers).json
    assert page0["pagination"] == {"pageNo": 0, "pageSize": 2, "totalSize": 5}
    seen = [c["commandId"] for c in page0["data"]] + [c["commandId"] for c in page2["data"]]
    assert len(seen) == 3
    assert set(seen) <= set(ids)
    everything = client.get(CMDS, headers=headers).json
    assert everything["pagination"]["pageSize"] == 1000
    assert {c["commandId"] for c in everything["data"]} == set(ids)


def test_query_commands_by_time_window(client, headers, device_id):
    create(client, headers, device_id)
    future = client.get(f"{CMDS}?startTime=20990101T000000Z", headers=headers).json
    past = client.get(f"{CMDS}?endTime=20000101T000000Z", headers=headers).json
    now = client.get(f"{CMDS}?startTime=20000101T000000Z", headers=headers).json
    assert (future["pagination"]["totalSize"], past["pagination"]["totalSize"]) == (0, 0)
    assert now["pagination"]["totalSize"] == 1


def test_cancel_one_then_again(client, headers, device_id):
    command_id = create(client, headers, device_id).json["commandId"]
    first = client.put(f"{CMDS}/{command_id}", json={"status": "CANCELED"}, headers=headers)
    assert (first.status_code, first.json["status"]) == (200, "CANCELED")
    second = client.put(f"{CMDS}/{command_id}", json={"status": "CANCELED"}, headers=headers)
    assert (second.status_code, second.json["error_code"]) == (409, "100435")
    unknown = client.put(f"{CMDS}/nope", json={"status": "CANCELED"}, headers=headers)
    assert (unknown.status_code, unknown.json["error_code"]) == (404, "100434")


def test_revocation_task_answers_201_waiting_with_its_scope(client, headers, device_id):
    ids = {create(client, headers, device_id).json["commandId"] for _ in range(3)}
    reply = client.post(TASKS, json={"deviceId": device_id}, headers=headers)
    assert reply.status_code == 201
    assert reply.json["status"] == "WAITING"
    assert reply.json["totalCount"] == 3
    assert reply.json["appId"] == "app-a"
    assert {c["commandId"] for c in reply.json["deviceCommands"]} == ids
    listed = client.get(f"{TASKS}?taskId={reply.json['taskId']}", headers=headers).json
    assert listed["pagination"]["totalSize"] == 1
    assert listed["data"][0]["status"] == "WAITING"
    by_old_spelling = client.get(f"{TASKS}?status=WAITTING", headers=headers).json
    assert by_old_spelling["pagination"]["totalSize"] == 1


def test_unknown_device_is_404_100418(client, headers):
    for reply in (
        create(client, headers, "missing"),
        client.post(TASKS, json={"deviceId": "missing"}, headers=headers),
        client.get("/iocm/app/dm/v1.4.0/devices/missing", headers=headers),
    ):
        assert (reply.status_code, reply.json["error_code"]) == (404, "100418")


def test_duplicate_node_id_is_refused(client, headers, device_id):
    reply = client.post(
        "/iocm/app/reg/v1.1.0/deviceCredentials", json={"nodeId": "n1"}, headers=headers
    )
    assert reply.status_code == 409


def test_device_query_and_delete(client, headers, device_id):
    create(client, headers, device_id)
    info = client.get(f"/iocm/app/dm/v1.4.0/devices/{device_id}", headers=headers)
    assert info.status_code == 200
    assert info.json["deviceInfo"]["nodeId"] == "n1"
    assert info.json["pendingCommands"] == 1
    assert "psk" not in info.json
    gone = client.delete(f"/iocm/app/dm/v1.4.0/devices/{device_id}", headers=headers)
    assert gone.status_code == 204
    after = client.get(f"/iocm/app/dm/v1.4.0/devices/{device_id}", headers=headers)
    assert after.status_code == 404
    assert create(client, headers, device_id).status_code == 404


def test_pending_limit_is_100223(client, svc, headers, device_id):
    svc.config = svc.config.with_(max_pending_per_device=2)
    assert create(client, headers, device_id).status_code == 201
    assert create(client, headers, device_id).status_code == 201
    reply = create(client, headers, device_id)
    assert (reply.status_code, reply.json["error_code"]) == (400, "100223")
    listed = client.get(CMDS, headers=headers).json
    assert listed["pagination"]["totalSize"] == 2


def test_other_applications_see_nothing(client, svc, headers, device_id):
    command_id = create(client, headers, device_id).json["commandId"]
    task_id = client.post(TASKS, json={"deviceId": device_id}, headers=headers).json["taskId"]
    other = login_headers(client, svc, "app-b")
    assert client.get(CMDS, headers=other).json["pagination"]["totalSize"] == 0
    assert client.get(TASKS, headers=other).json["pagination"]["totalSize"] == 0
    assert client.get(f"{TASKS}?taskId={task_id}", headers=other).json["data"] == []
    put = client.put(f"{CMDS}/{command_id}", json={"status": "CANCELED"}, headers=other)
    assert put.status_code == 404
    assert create(client, other, device_id).status_code == 404
    assert client.post(TASKS, json={"deviceId": device_id}, headers=other).status_code == 404
    mine = client.get(f"{CMDS}?deviceId={device_id}", headers=headers).json["data"]
    assert [c["status"] for c in mine] == ["PENDING"]


@pytest.mark.parametrize("names", [{}, {"productKey": "pk", "deviceKey": "dk", "assetId": "a1"}])
def test_device_answer_is_what_its_documented_schema_dumps(client, svc, headers, names):
    """The device answer is written by a plain function (app.schemas.devices.device_answer):
    it must say exactly what the DeviceAnswer schema the OpenAPI document shows would."""
    from app.schemas.devices import DeviceAnswer
    from devcmd.domain import devices

    registered = client.post(
        "/iocm/app/reg/v1.1.0/deviceCredentials", json={"nodeId": "n2", **names}, headers=headers
    )
    device_id = registered.json["deviceId"]
    create(client, headers, device_id)
    answer = client.get(f"/iocm/app/dm/v1.4.0/devices/{device_id}", headers=headers).json
    assert answer == DeviceAnswer().dump(devices.get(svc, "app-a", device_id))
    assert answer["pendingCommands"] == 1
    assert {k: answer["deviceInfo"].get(k) for k in names} == names


def test_task_answer_is_what_its_documented_schema_dumps(client, svc, headers, device_id):
    """Task answers are written by a plain function (app.schemas.revocations.task_answer): it
    must say exactly what the TaskAnswer schema the OpenAPI document shows would, for a new
    task, a finished one and one with a reason and fields the answer leaves out."""
    from app.schemas.revocations import TaskAnswer, task_answer
    from devcmd.domain import revocations

    create(client, headers, device_id)
    opened = client.post(TASKS, json={"deviceId": device_id}, headers=headers).json
    record = revocations.get(svc, "app-a", opened["taskId"])
    assert {k: v for k, v in opened.items() if k != "deviceCommands"} == TaskAnswer().dump(record)
    while not revocations.sweep(svc, "app-a", device_id, opened["taskId"]).done:
        pass
    finished = revocations.get(svc, "app-a", opened["taskId"])
    listed = client.get(f"{TASKS}?taskId={opened['taskId']}", headers=headers).json["data"]
    assert listed == [TaskAnswer().dump(finished)]
    assert (listed[0]["status"], bool(listed[0]["finishTime"])) == ("SUCCESS", True)
    partial = finished | {"status": "PART_SUCCESS", "reason": "1 command(s) ...", "extra": "x"}
    assert task_answer(partial) == TaskAnswer().dump(partial)
    assert list(task_answer(partial)) == list(TaskAnswer().dump(partial))  # the same order


def test_each_request_parses_its_own_query_inside_an_outer_app_context(client, headers, device_id):
    """The query is parsed once per request and kept with the request, not in `g`, which an
    outer application context shares between requests."""
    pages = []
    with client.application.app_context():
        for size in (1, 2, 3):
            query = {"deviceId": device_id, "pageSize": size}
            reply = client.get(
                "/iocm/app/cmd/v1.4.0/deviceCommands", query_string=query, headers=headers
            )
            pages.append(reply.json["pagination"]["pageSize"])
    assert pages == [1, 2, 3]
