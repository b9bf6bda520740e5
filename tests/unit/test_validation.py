"""Bad input always gets 400 100022 naming the field, never a 500, and writes nothing."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CMDS = "/iocm/app/cmd/v1.4.0/deviceCommands"
TASKS = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"
GOOD = {"serviceId": "Light", "method": "ON", "paras": {}}


def post_raw(client, headers, body):
    """POST `body` encoded by the standard library, as a client in any language may send it."""
    content = {**headers, "Content-Type": "application/json"}
    return client.post(CMDS, data=json.dumps(body), headers=content)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"command": GOOD}, "deviceId"),
        ({"deviceId": "", "command": GOOD}, "deviceId"),
        ({"deviceId": "d" * 65, "command": GOOD}, "deviceId"),
        ({"deviceId": 7, "command": GOOD}, "deviceId"),
        ({"deviceId": "d"}, "command"),
        ({"deviceId": "d", "command": "x"}, "command"),
        ({"deviceId": "d", "command": {"method": "ON"}}, "command.serviceId"),
        ({"deviceId": "d", "command": {**GOOD, "method": "m" * 129}}, "command.method"),
        ({"deviceId": "d", "command": {**GOOD, "paras": [1]}}, "command.paras"),
        ({"deviceId": "d", "command": {**GOOD, "paras": {"n": 2**64}}}, "command.paras"),
        ({"deviceId": "d", "command": GOOD, "expireTime": -1}, "expireTime"),
        ({"deviceId": "d", "command": GOOD, "expireTime": "60"}, "expireTime"),
        ({"deviceId": "d", "command": GOOD, "expireTime": 1.5}, "expireTime"),
        ({"deviceId": "d", "command": GOOD, "expireTime": True}, "expireTime"),
        ({"deviceId": "d", "command": GOOD, "maxRetransmit": 4}, "maxRetransmit"),
        ({"deviceId": "d", "command": GOOD, "callbackUrl": "ftp://x/y"}, "callbackUrl"),
        ({"deviceId": "d", "command": GOOD, "callbackUrl": "not a url"}, "callbackUrl"),
        (
            {"deviceId": "d", "command": GOOD, "callbackUrl": "http://a/" + "x" * 1100},
            "callbackUrl",
        ),
    ],
)
def test_bad_command_bodies_name_the_field(client, headers, body, field):
    reply = post_raw(client, headers, body)
    assert reply.status_code == 400
    assert reply.json["error_code"] == "100022"
    assert f"{field}:" in reply.json["error_desc"]
    assert client.get(CMDS, headers=headers).json["pagination"]["totalSize"] == 0


@pytest.mark.parametrize("raw", [b"", b"{", b"null", b"[]", b'"x"', b"\xff\xfe"])
def test_malformed_json_is_100022(client, headers, raw):
    for path in (CMDS, TASKS):
        reply = client.post(path, data=raw, headers={**headers, "Content-Type": "application/json"})
        assert (reply.status_code, reply.json["error_code"]) == (400, "100022")


@pytest.mark.parametrize(
    "query",
    ["pageNo=-1", "pageSize=0", "pageSize=1001", "pageNo=x", "startTime=2017-02-22", "endTime=1"],
)
def test_bad_paging_is_100022(client, headers, query):
    for path in (CMDS, TASKS):
        reply = client.get(f"{path}?{query}", headers=headers)
        assert (reply.status_code, reply.json["error_code"]) == (400, "100022")
        assert query.split("=")[0] in reply.json["error_desc"]


def test_bad_task_status_filter_and_cancel_body(client, headers, device_id):
    reply = client.get(f"{TASKS}?status=DONE", headers=headers)
    assert (reply.status_code, reply.json["error_code"]) == (400, "100022")
    command = client.post(CMDS, json={"deviceId": device_id, "command": GOOD}, headers=headers)
    path = f"{CMDS}/{command.json['commandId']}"
    for body in ({}, {"status": "EXPIRED"}, {"status": None}):
        assert client.put(path, json=body, headers=headers).status_code == 400
    assert client.get(CMDS, headers=headers).json["data"][0]["status"] == "PENDING"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
command_like = st.fixed_dictionaries(
    {},
    optional={
        "deviceId": json_values,
        "command": json_values
        | st.fixed_dictionaries({}, optional=dict.fromkeys(GOOD, json_values)),
        "callbackUrl": json_values,
        "expireTime": json_values,
        "maxRetransmit": json_values,
    },
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=command_like)
def test_arbitrary_json_never_gives_a_5xx(client, headers, body):
    reply = post_raw(client, headers, body)
    assert reply.status_code in (201, 400, 404)
    assert reply.status_code == 201 or set(reply.json) == {"error_code", "error_desc"}


def test_a_method_not_allowed_says_which_are_in_allow(client, headers):
    reply = client.open(CMDS, method="TRACE", headers=headers)
    assert (reply.status_code, reply.json["error_code"]) == (405, "100022")
    assert set(reply.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}
    assert reply.mimetype == "application/json"
