"""The `status` query parameter of GET .../deviceCommands as a contract: how it parses, how the
OpenAPI document describes it, and that the answers match that document."""

from __future__ import annotations

import re

import pytest
from marshmallow import ValidationError

from app.schemas.commands import CommandsQuery
from devcmd.domain.commands import STATUSES
from tests.unit.test_openapi import assert_documented_answer

CMDS = "/iocm/app/cmd/v1.4.0/deviceCommands"
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {}}


def status_parameter(client) -> dict:
    operation = client.get("/openapi.json").json["paths"][CMDS]["get"]
    (parameter,) = [p for p in operation["parameters"] if p["name"] == "status"]
    return parameter


@pytest.mark.parametrize(
    ("given", "loaded"),
    [
        ("SENT", ["SENT"]),
        ("DEFAULT", ["PENDING"]),
        ("EXPIRED, DEFAULT,SENT", ["PENDING", "SENT", "EXPIRED"]),
        ("PENDING,DEFAULT", ["PENDING"]),
    ],
)
def test_statuses_load_as_the_statuses_they_mean(given, loaded):
    assert CommandsQuery().load({"status": given})["status"] == loaded


def test_no_status_means_no_filter():
    assert CommandsQuery().load({})["status"] is None


@pytest.mark.parametrize("given", ["DONE", "Pending", "SENT,", "WAITTING", " "])
def test_anything_else_is_refused_naming_the_field(given):
    with pytest.raises(ValidationError) as refused:
        CommandsQuery().load({"status": given})
    assert "status" in refused.value.messages


def test_the_document_gives_the_names_and_the_cost(client):
    parameter = status_parameter(client)
    assert parameter["required"] is False
    pattern = re.compile(parameter["schema"]["pattern"])
    for good in [*STATUSES, "DEFAULT", "PENDING,SENT", "DEFAULT, CANCELED"]:
        assert pattern.match(good), good
    for bad in ["DONE", "PENDING,", "pending"]:
        assert not pattern.match(bad), bad
    assert "index" in parameter["description"]
    assert "never with the commands in other statuses" in parameter["description"]


def test_answers_are_the_documented_ones(client, headers, device_id):
    document = client.get("/openapi.json").json
    for _ in range(3):
        created = client.post(
            CMDS, json={"deviceId": device_id, "command": COMMAND}, headers=headers
        )
    client.put(f"{CMDS}/{created.json['commandId']}", json={"status": "CANCELED"}, headers=headers)
    reply = client.get(CMDS, query_string={"status": "DEFAULT,CANCELED"}, headers=headers)
    assert_documented_answer(document, CMDS, "GET", reply)
    assert reply.json["pagination"]["totalSize"] == 3
    assert [c["status"] for c in reply.json["data"]].count("CANCELED") == 1
    refused = client.get(CMDS, query_string={"status": "DONE"}, headers=headers)
    assert_documented_answer(document, CMDS, "GET", refused)
    assert (refused.status_code, refused.json["error_code"]) == (400, "100022")
    assert "'DONE'" in refused.json["error_desc"]
