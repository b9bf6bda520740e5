"""Request limits (README "Input rules"): body size, paras size and depth, page sizes, strict
JSON content types and unknown fields, each refused in its dialect's envelope with nothing
written."""

from __future__ import annotations

import json
from types import SimpleNamespace
from urllib.parse import urlencode

import orjson
import pytest

from app import create_app, schemas
from app.schemas.commands import depth
from devcmd.domain import commands

REG = "/iocm/app/reg/v1.1.0/deviceCredentials"
CMDS = "/iocm/app/cmd/v1.4.0/deviceCommands"
TASKS = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"
LOGIN = "/iocm/app/sec/v1.1.0/login"
ENOS = "/connect-service/v2.1/commands"
JSON = {"Content-Type": "application/json"}


def commands_of_app(svc) -> int:
    """How many commands application app-a has, as the API counts them (totalSize)."""
    return commands.query(svc, "app-a", None, 0, 2**62, 0, 1)[0]


def nested(levels: int) -> dict:
    """An object `levels` deep: {"k": {"k": ... {}}}."""
    value: dict = {}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


def create(client, headers, device_id, paras, **extra):
    command = {"serviceId": "s", "method": "m", "paras": paras}
    return client.post(
        CMDS, json={"deviceId": device_id, "command": command, **extra}, headers=headers
    )


def invoke(client, headers, device_id, body):
    query = f"action=invokeService&orgId=app-a&assetId={device_id}&serviceId=s&pendingTtl=60"
    return client.post(f"{ENOS}?{query}", json=body, headers=headers)


def test_depth_counts_objects_and_arrays():
    assert [depth(v) for v in ({}, {"a": 1}, {"a": [1]}, {"a": [{"b": {}}]}, nested(16))] == [
        1, 1, 2, 4, 16,
    ]  # fmt: skip


def test_paras_up_to_the_depth_limit_are_taken(client, headers, device_id):
    assert create(client, headers, device_id, nested(16)).status_code == 201


def test_paras_nested_too_deeply_are_100022_naming_the_field(client, svc, headers, device_id):
    reply = create(client, headers, device_id, nested(17))
    assert (reply.status_code, reply.json["error_code"]) == (400, "100022")
    assert "command.paras: nests deeper than 16 levels" in reply.json["error_desc"]
    assert commands_of_app(svc) == 0


def test_paras_over_the_size_limit_are_100022(client, svc, headers, device_id):
    limit = svc.config.max_paras_bytes
    fits = {"blob": "x" * (limit - len('{"blob":""}'))}
    assert create(client, headers, device_id, fits).status_code == 201
    reply = create(client, headers, device_id, {"blob": "x" * limit})
    assert (reply.status_code, reply.json["error_code"]) == (400, "100022")
    assert (
        f"command.paras: is {limit + 11} bytes as JSON, more than {limit}"
        in reply.json["error_desc"]
    )
    assert commands_of_app(svc) == 1


def test_enos_input_data_has_the_same_limits(client, svc, headers, device_id):
    deep = invoke(client, headers, device_id, {"inputData": nested(17)})
    assert deep.status_code == 200
    assert deep.json["code"] == 99400
    assert deep.json["submsg"].startswith("inputData: nests deeper")
    big = invoke(client, headers, device_id, {"inputData": {"b": "x" * svc.config.max_paras_bytes}})
    assert big.json["code"] == 99400
    assert "inputData: is" in big.json["submsg"]
    assert commands_of_app(svc) == 0


def test_limits_come_from_the_configuration(svc, headers, device_id):
    svc.config = svc.config.with_(max_paras_bytes=20, max_paras_depth=2)
    client = create_app(services=svc).test_client()
    assert create(client, headers, device_id, {"a": [1]}).status_code == 201
    assert create(client, headers, device_id, {"a": [[1]]}).status_code == 400
    assert create(client, headers, device_id, {"a": "x" * 20}).status_code == 400


def test_a_body_over_max_content_length_is_413_in_the_envelope(svc, headers, device_id):
    svc.config = svc.config.with_(max_content_length=2000)
    client = create_app(services=svc).test_client()
    reply = create(client, headers, device_id, {"b": "x" * 2000})
    assert (reply.status_code, reply.json["error_code"]) == (413, "100022")
    assert reply.json["error_desc"] == "The request body is larger than 2000 bytes."
    enos = invoke(client, headers, device_id, {"inputData": {"b": "x" * 2000}})
    assert (enos.status_code, enos.json["code"]) == (200, 99400)
    assert "larger than 2000 bytes" in enos.json["submsg"]
    assert commands_of_app(svc) == 0
    assert create(client, headers, device_id, {"b": "x" * 100}).status_code == 201


def test_json_nested_beyond_the_parser_is_400_not_500(client, headers):
    raw = "[" * 100_000 + "]" * 100_000
    reply = client.post(CMDS, data=raw, headers={**headers, **JSON})
    assert (reply.status_code, reply.json["error_code"]) == (400, "100022")
    assert "body: is not valid JSON" in reply.json["error_desc"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_json_endpoints_refuse_other_content_types_with_415(
    client, svc, headers, device_id, content_type
):
    body = json.dumps({"deviceId": device_id, "command": {"serviceId": "s", "method": "m"}})
    reply = client.post(CMDS, data=body, headers={**headers, "Content-Type": content_type})
    assert (reply.status_code, reply.json["error_code"]) == (415, "100022")
    assert content_type in reply.json["error_desc"]
    task = client.post(
        TASKS,
        data=json.dumps({"deviceId": device_id}),
        headers={**headers, "Content-Type": content_type},
    )
    assert task.status_code == 415
    assert commands_of_app(svc) == 0
    assert svc.redis.zcard("dc:{app-a}:tasks") == 0
    query = f"action=invokeService&orgId=app-a&assetId={device_id}&serviceId=s&pendingTtl=60"
    enos = client.post(
        f"{ENOS}?{query}", data="{}", headers={**headers, "Content-Type": content_type}
    )
    assert (enos.status_code, enos.json["code"]) == (200, 99400)
    assert commands_of_app(svc) == 0


def test_json_with_a_charset_or_a_json_suffix_or_no_content_type_is_read(
    client, headers, device_id
):
    body = json.dumps({"deviceId": device_id, "command": {"serviceId": "s", "method": "m"}})
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json", None):
        extra = {"Content-Type": content_type} if content_type else {}
        assert client.post(CMDS, data=body, headers={**headers, **extra}).status_code == 201


def test_an_empty_enos_post_needs_no_content_type(client, headers, device_id):
    reply = client.post(
        f"{ENOS}?action=cancel&orgId=app-a&assetId={device_id}",
        data=b"",
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.json["code"] == 0


def test_login_takes_a_form_or_json(client, svc):
    from devcmd.domain import auth

    auth.create_application(svc, app_id="app-z", secret="z")
    assert client.post(LOGIN, data={"appId": "app-z", "secret": "z"}).status_code == 200
    assert client.post(LOGIN, json={"appId": "app-z", "secret": "z"}).status_code == 200


@pytest.mark.parametrize(
    "body", [b"appId=app-z&secret=z", b'{"appId": "app-z", "secret": "z"}', b"secret=z&appId=app-z"]
)
def test_login_without_a_content_type_reads_a_form_or_a_json_object(client, svc, body):
    """As a public PHP OceanConnect client sends it: no Content-Type header at all."""
    from devcmd.domain import auth

    auth.create_application(svc, app_id="app-z", secret="z")
    environ = client.post(LOGIN, data=body).request.environ
    assert "CONTENT_TYPE" not in environ or not environ["CONTENT_TYPE"]
    reply = client.post(LOGIN, data=body)
    assert reply.status_code == 200
    refresh = client.post(
        "/iocm/app/sec/v1.1.0/refreshToken",
        data=f"appId=app-z&secret=z&refreshToken={reply.json['refreshToken']}".encode(),
    )
    assert refresh.status_code == 200
    assert refresh.json["accessToken"] != reply.json["accessToken"]


def undeclared(fields: dict[str, str], kind: str) -> bytes:
    """A login or refresh body as clients send it without a Content-Type: JSON or a form."""
    return json.dumps(fields).encode() if kind == "json" else urlencode(fields).encode()


@pytest.mark.parametrize(("kind", "parses"), [("json", ["json"]), ("form", ["json", "form"])])
def test_a_login_and_a_refresh_parse_their_body_once(client, svc, monkeypatch, kind, parses):
    """The login limit's key (the appId tried) and the view read one parse of the body (a form
    is tried as JSON first)."""
    from devcmd.domain import auth

    auth.create_application(svc, app_id="app-z", secret="z")
    seen: list[str] = []
    loads, parse_qsl = schemas.orjson.loads, schemas.parse_qsl

    def json_parse(raw):
        seen.append("json")
        return loads(raw)

    def form_parse(text, **kwargs):
        seen.append("form")
        return parse_qsl(text, **kwargs)

    parser = SimpleNamespace(loads=json_parse, JSONDecodeError=orjson.JSONDecodeError)
    monkeypatch.setattr(schemas, "orjson", parser)
    monkeypatch.setattr(schemas, "parse_qsl", form_parse)
    login = {"appId": "app-z", "secret": "z"}
    reply = client.post(LOGIN, data=undeclared(login, kind))
    assert (reply.status_code, seen) == (200, parses)
    seen.clear()
    body = undeclared(login | {"refreshToken": reply.json["refreshToken"]}, kind)
    reply = client.post("/iocm/app/sec/v1.1.0/refreshToken", data=body)
    assert (reply.status_code, seen) == (200, parses)


@pytest.mark.parametrize("body", [b"appId=app-z", b"[1, 2]", b"\xff\xfe", b""])
def test_an_undeclared_login_body_missing_a_field_is_refused_as_missing(client, svc, body):
    from devcmd.domain import auth

    auth.create_application(svc, app_id="app-z", secret="z")
    reply = client.post(LOGIN, data=body)
    assert (reply.status_code, reply.json["error_code"]) == (400, "102202")


def test_a_login_declared_as_another_type_is_415(client):
    reply = client.post(LOGIN, data=b"appId=a&secret=b", headers={"Content-Type": "text/plain"})
    assert (reply.status_code, reply.json["error_code"]) == (415, "100022")


@pytest.mark.parametrize("size", ["0", "1001"])
def test_every_list_answers_at_most_1000_a_page(client, headers, device_id, size):
    for path in (CMDS, TASKS):
        reply = client.get(f"{path}?pageSize={size}", headers=headers)
        assert (reply.status_code, reply.json["error_code"]) == (400, "100022")
        assert "pageSize" in reply.json["error_desc"]
    search = client.post(
        f"{ENOS}?action=search&orgId=app-a&assetId={device_id}",
        json={"pagination": {"pageNo": 1, "pageSize": int(size)}},
        headers=headers,
    )
    assert search.json["code"] == 99400
    assert "pagination.pageSize" in search.json["submsg"]


def test_page_size_1000_is_accepted_everywhere(client, headers, device_id):
    for path in (CMDS, TASKS):
        assert client.get(f"{path}?pageSize=1000", headers=headers).status_code == 200
    search = client.post(
        f"{ENOS}?action=search&orgId=app-a&assetId={device_id}",
        json={"pagination": {"pageNo": 1, "pageSize": 1000}},
        headers=headers,
    )
    assert search.json["code"] == 0


@pytest.mark.parametrize("size", ["0", "101"])
def test_devices_take_at_most_100_commands_a_fetch(client, headers, size):
    registered = client.post(REG, json={"nodeId": "n9"}, headers=headers).json
    reply = client.get(
        f"/southbound/v1/devices/{registered['deviceId']}/commands?max={size}",
        auth=(registered["deviceId"], registered["psk"]),
    )
    assert (reply.status_code, reply.json["error_code"]) == (400, "100022")
    assert "max" in reply.json["error_desc"]


def test_unknown_fields_are_ignored_in_every_json_body(client, headers, device_id):
    extra = {"unknownField": 1, "_links": {"self": "x"}}
    registered = client.post(REG, json={"nodeId": "n2", **extra}, headers=headers)
    assert registered.status_code == 200
    command = {"serviceId": "s", "method": "m", "paras": {}, **extra}
    created = client.post(
        CMDS, json={"deviceId": device_id, "command": command, **extra}, headers=headers
    )
    assert created.status_code == 201
    cancelled = client.put(
        f"{CMDS}/{created.json['commandId']}", json={"status": "CANCELED", **extra}, headers=headers
    )
    assert cancelled.status_code == 200
    assert (
        client.post(TASKS, json={"deviceId": device_id, **extra}, headers=headers).status_code
        == 201
    )
    search = client.post(
        f"{ENOS}?action=search&orgId=app-a&assetId={device_id}",
        json={"pagination": {"pageNo": 1, "pageSize": 5, **extra}, **extra},
        headers=headers,
    )
    assert search.json["code"] == 0
    assert invoke(client, headers, device_id, {"inputData": {}, **extra}).json["code"] == 0
