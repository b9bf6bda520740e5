"""The OpenAPI document: valid, complete (every route, method and error code), served with
Swagger UI, and true: calls built from what it documents succeed, and real answers match the
schemas it gives for them."""

from __future__ import annotations

import re

import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from app import errors

SKIPPED = {"static", "openapi.static"}
CMDS = "/iocm/app/cmd/v1.4.0/deviceCommands"
TASKS = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"
ENOS = "/connect-service/v2.1/commands"
REG = "/iocm/app/reg/v1.1.0/deviceCredentials"


@pytest.fixture
def document(client) -> dict:
    reply = client.get("/openapi.json")
    assert reply.status_code == 200
    return reply.json


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def minimal(document: dict, schema: dict):
    """The smallest value the schema documents as valid: required properties only."""
    schema = resolve(document, schema)
    assert "pattern" not in schema, "teach minimal() this pattern"
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        required = schema.get("required", [])
        props = schema.get("properties", {})
        return {name: minimal(document, props[name]) for name in required}
    if kind == "integer":
        return schema.get("minimum", 0)
    if kind == "array":
        return []
    assert kind == "string", schema
    return "x" * max(1, schema.get("minLength", 1))


def operation(document: dict, path: str, method: str) -> dict:
    return document["paths"][path][method.lower()]


def body_schema(document: dict, path: str, method: str) -> dict:
    return resolve(
        document,
        operation(document, path, method)["requestBody"]["content"]["application/json"]["schema"],
    )


def assert_documented_answer(document: dict, path: str, method: str, reply) -> None:
    """The reply's status is documented for the operation and its body matches the schema."""
    responses = operation(document, path, method)["responses"]
    assert str(reply.status_code) in responses, (path, method, reply.status_code, reply.data)
    content = responses[str(reply.status_code)].get("content")
    if content is None:
        assert reply.data == b""
        return
    schema = content["application/json"]["schema"] | {"components": document["components"]}
    OAS30Validator(schema).validate(reply.json)


def test_the_served_document_is_valid_openapi_3(document):
    validate(document)
    assert document["openapi"].startswith("3.")


def test_every_route_is_documented_with_each_of_its_methods(client, document):
    routes = [r for r in client.application.url_map.iter_rules() if r.endpoint not in SKIPPED]
    assert len(routes) >= 16
    for rule in routes:
        documented = document["paths"].get(openapi_path(rule.rule), {})
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in documented, (rule.rule, method)
            assert documented[method.lower()]["responses"], (rule.rule, method)


def documented_codes(document: dict, field: str) -> set:
    """Every `field` value that some operation lists among its answers."""
    found = set()
    for item in document["paths"].values():
        for op in (v for k, v in item.items() if k != "parameters"):
            for response in op["responses"].values():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                for part in [schema, *schema.get("anyOf", [])]:
                    for sub in part.get("allOf", []):
                        found |= set(sub.get("properties", {}).get(field, {}).get("enum", []))
    return found


def test_every_oceanconnect_error_code_is_answered_by_some_operation(document):
    codes = {code for _, code in errors.CATALOGUE.values()} | set(errors.HTTP_CODES.values())
    codes.add(errors.INTERNAL[1])
    assert codes <= documented_codes(document, "error_code")
    schema = document["components"]["schemas"]["ErrorAnswer"]["properties"]["error_code"]
    assert set(schema["enum"]) == codes
    assert all(f"| {code} |" in schema["description"] for code in codes)


def test_every_enos_error_code_is_answered_by_some_operation(document):
    codes = {code for code, _ in errors.ENOS_CATALOGUE.values()}
    codes |= {code for code, _ in errors.ENOS_ACTION_CODES.values()}
    codes |= {errors.ENOS_INVALID[0], errors.ENOS_INTERNAL[0]}
    assert codes <= documented_codes(document, "code")
    schema = document["components"]["schemas"]["EnosError"]["properties"]["code"]
    assert set(schema["enum"]) == codes


def test_security_schemes_match_each_dialect(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["app_key"] == schemes["app_key"] | {"type": "apiKey", "in": "header"}
    assert (schemes["bearer"]["scheme"], schemes["device"]["scheme"]) == ("bearer", "basic")
    assert operation(document, CMDS, "POST")["security"] == [{"app_key": [], "bearer": []}]
    assert operation(document, ENOS, "GET")["security"] == [{"app_key": [], "bearer": []}]
    fetch = operation(document, "/southbound/v1/devices/{device_id}/commands", "GET")
    assert fetch["security"] == [{"device": []}]
    assert operation(document, "/iocm/app/sec/v1.1.0/login", "POST")["security"] == []


def test_docs_is_swagger_ui_loading_the_document_from_packaged_files(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'url: "/openapi.json"' in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:
        with client.get(asset) as reply:
            assert reply.status_code == 200, asset
            assert reply.data, asset


def test_a_create_call_built_from_the_documented_schema_is_accepted(
    client, headers, device_id, document
):
    schema = body_schema(document, CMDS, "POST")
    body = minimal(document, schema) | {"deviceId": device_id}
    reply = client.post(CMDS, json=body, headers=headers)
    assert reply.status_code == 201, reply.json
    assert_documented_answer(document, CMDS, "POST", reply)


def test_each_documented_required_field_is_required(client, headers, device_id, document):
    schema = body_schema(document, CMDS, "POST")
    body = minimal(document, schema) | {"deviceId": device_id}
    for field in schema["required"]:
        reply = client.post(
            CMDS, json={k: v for k, v in body.items() if k != field}, headers=headers
        )
        assert (reply.status_code, reply.json["error_code"]) == (400, "100022"), field
        assert_documented_answer(document, CMDS, "POST", reply)


def enos_required(document: dict, action: str) -> dict:
    """The query an EnOS call needs for `action`, as the document says."""
    found = {"action": action}
    for parameter in operation(document, ENOS, "POST")["parameters"]:
        if parameter.get("required") or action in parameter.get("x-required-for", []):
            found.setdefault(parameter["name"], minimal(document, parameter["schema"]))
    return found


def test_an_enos_invoke_built_from_the_documented_parameters_is_accepted(
    client, headers, device_id, document
):
    query = enos_required(document, "invokeService") | {"orgId": "app-a", "assetId": device_id}
    assert "serviceId" in query
    body = minimal(document, body_schema(document, ENOS, "POST")["anyOf"][1])
    reply = client.post(ENOS, query_string=query | {"pendingTtl": 60}, json=body, headers=headers)
    assert reply.json["code"] == 0, reply.json
    assert_documented_answer(document, ENOS, "POST", reply)
    for name in set(query) - {"action", "orgId", "assetId"}:
        lacking = {k: v for k, v in query.items() if k != name} | {"pendingTtl": 60}
        reply = client.post(ENOS, query_string=lacking, headers=headers)
        assert reply.json["code"] == 99400, name
        assert_documented_answer(document, ENOS, "POST", reply)


def test_real_oceanconnect_answers_match_their_documented_schemas(
    client, headers, device_id, document
):
    command = {"serviceId": "Light", "method": "ON", "paras": {"level": 1}}
    created = client.post(CMDS, json={"deviceId": device_id, "command": command}, headers=headers)
    command_id = created.json["commandId"]
    calls = [
        ("GET", "/iocm/app/dm/v1.4.0/devices/{device_id}", {}),
        ("GET", CMDS, {"query_string": {"deviceId": device_id}}),
        ("GET", CMDS + "/{command_id}/notifications", {}),
        ("PUT", CMDS + "/{command_id}", {"json": {"status": "CANCELED"}}),
        ("PUT", CMDS + "/{command_id}", {"json": {"status": "CANCELED"}}),  # 409
        ("POST", TASKS, {"json": {"deviceId": device_id}}),
        ("GET", TASKS, {}),
        ("GET", "/iocm/app/dm/v1.4.0/devices/{device_id}", {"headers": {"app_key": "app-a"}}),
        ("POST", REG, {"json": {"nodeId": "n2", "assetId": "a-2"}}),
        ("POST", REG, {"json": {"nodeId": "n2"}}),  # 409 nodeId taken
        ("DELETE", "/iocm/app/dm/v1.4.0/devices/{device_id}", {}),
        ("GET", "/iocm/app/dm/v1.4.0/devices/{device_id}", {}),  # 404 once deleted
        ("GET", "/healthz", {}),
        ("GET", "/readyz", {}),  # no worker here: 503
    ]
    statuses = set()
    for method, path, kwargs in calls:
        url = path.format(device_id=device_id, command_id=command_id)
        kwargs = {"headers": headers} | kwargs
        reply = client.open(url, method=method, **kwargs)
        assert_documented_answer(document, path, method, reply)
        statuses.add(reply.status_code)
    assert {200, 201, 204, 401, 404, 409, 503} <= statuses


def test_login_answers_match_their_documented_schemas(client, headers, document):
    login = "/iocm/app/sec/v1.1.0/login"
    for form in (
        {"appId": "app-a", "secret": "app-a-secret"},
        {"appId": "app-a"},
        {"appId": "app-a", "secret": "no"},
    ):
        assert_documented_answer(document, login, "POST", client.post(login, data=form))


def test_real_enos_answers_match_their_documented_schemas(client, headers, device_id, document):
    command = {"serviceId": "Light", "method": "ON"}
    created = client.post(CMDS, json={"deviceId": device_id, "command": command}, headers=headers)
    device = {"orgId": "app-a", "assetId": device_id}
    command_id = {"commandId": created.json["commandId"]}
    calls = [
        ("GET", {"action": "get"} | command_id),
        ("GET", {"action": "get", "commandId": "nope"}),  # 11404
        ("POST", {"action": "search"}),
        ("GET", {"action": "cancel"}),  # 99400: a write with GET
        ("POST", {"action": "cancel"} | command_id),
        ("POST", {"action": "cancel"} | command_id),  # 99409
        ("POST", {"action": "cancel"}),
    ]
    codes = set()
    for method, query in calls:
        reply = client.open(ENOS, method=method, query_string=device | query, headers=headers)
        assert_documented_answer(document, ENOS, method, reply)
        codes.add(reply.json["code"])
    search = client.post(
        ENOS,
        query_string=device | {"action": "search"},
        json={"projection": ["commandId"]},
        headers=headers,
    )
    assert_documented_answer(document, ENOS, "POST", search)
    assert codes == {0, 11404, 99400, 99409}


def test_device_api_answers_match_their_documented_schemas(client, headers, document):
    registered = client.post(REG, json={"nodeId": "dev"}, headers=headers).json
    device_id, psk = registered["deviceId"], registered["psk"]
    command = {"serviceId": "Light", "method": "ON"}
    created = client.post(CMDS, json={"deviceId": device_id, "command": command}, headers=headers)
    base = "/southbound/v1/devices/{device_id}/commands"
    auth = {"auth": (device_id, psk)}
    calls = [
        ("GET", base, auth),
        ("POST", base + "/{command_id}/ack", auth),
        ("POST", base + "/{command_id}/result", auth | {"json": {"resultCode": "SUCCESSFUL"}}),
        ("POST", base + "/{command_id}/ack", auth),  # 409
        ("GET", base, {"auth": (device_id, "wrong")}),  # 401
    ]
    statuses = set()
    for method, path, kwargs in calls:
        url = path.format(device_id=device_id, command_id=created.json["commandId"])
        reply = client.open(url, method=method, **kwargs)
        assert_documented_answer(document, path, method, reply)
        statuses.add(reply.status_code)
    assert statuses == {200, 204, 401, 409}


def test_an_unknown_commands_notifications_are_a_documented_404(client, headers, document):
    path = CMDS + "/{command_id}/notifications"
    reply = client.get(CMDS + "/nope/notifications", headers=headers)
    assert (reply.status_code, reply.json["error_code"]) == (404, "100434")
    assert_documented_answer(document, path, "GET", reply)


def test_an_empty_appId_query_is_documented_as_the_caller_itself(client, headers, document):
    acting = [p for p in operation(document, CMDS, "GET")["parameters"] if p["name"] == "appId"]
    assert acting[0]["schema"].get("minLength", 0) == 0
    reply = client.get(CMDS, query_string={"appId": ""}, headers=headers)
    assert reply.status_code == 200
    assert_documented_answer(document, CMDS, "GET", reply)


def test_productKey_and_deviceKey_are_documented_as_given_together(client, headers, document):
    schema = body_schema(document, REG, "POST") | {"components": document["components"]}
    validator = OAS30Validator(schema)
    for n, names in enumerate(
        ({"productKey": "p"}, {"deviceKey": "d"}, {"productKey": "p", "deviceKey": None})
    ):
        body = {"nodeId": f"alone-{n}", **names}
        assert not validator.is_valid(body), body
        assert client.post(REG, json=body, headers=headers).status_code == 400, body
    for n, names in enumerate(({"productKey": "p", "deviceKey": "d"}, {"productKey": None}, {})):
        body = {"nodeId": f"together-{n}", **names}
        assert validator.is_valid(body), body
        assert client.post(REG, json=body, headers=headers).status_code == 200, body


@pytest.mark.parametrize(
    ("url", "taken"),
    [
        ("ftp://127.0.0.1/cb", False),
        ("file:///etc/passwd", False),
        ("https://0.a", False),  # a URI, but marshmallow wants a longer top-level label
        ("http://example.com:65536/", False),  # the callback guard bounds the port
        ("http://127.0.0.1:9/cb", True),
        ("HTTPS://127.0.0.1/cb", True),  # the validator reads the scheme in any case
        ("http://u:p@example.com:65535/a?b=c#d", True),
        ("http://[2606:4700::1111]:8080/", True),
        ("http://localhost", True),
        # Internationalized hosts in their IDNA form only (callback_guard says why)
        ("http://xn--bcher-kva.example/cb", True),
        ("http://bücher.example/cb", False),
        ("http://BÜCHER.example/cb", False),
        ("http://faß.de/cb", False),  # fass.de by IDNA 2003, xn--fa-hia.de by IDNA 2008
        ("http://例え.テスト/cb", False),
        ("http://ｅxample.com/cb", False),  # noqa: RUF001 - full-width e, NFKC maps it to ASCII
        ("http://bücher/cb", False),  # a single label (require_tld=False)
    ],
)
def test_callback_urls_are_documented_as_the_api_takes_them(
    client, headers, device_id, document, url, taken
):
    """`format: uri` alone admits any scheme: the document's pattern says what the API takes."""
    create = body_schema(document, CMDS, "POST")["properties"]["callbackUrl"]
    invoke = [
        p for p in operation(document, ENOS, "POST")["parameters"] if p["name"] == "callbackUrl"
    ]
    for schema in (create, invoke[0]["schema"]):
        assert OAS30Validator(schema).is_valid(url) is taken, schema
    body = {"deviceId": device_id, "command": {"serviceId": "s", "method": "m"}, "callbackUrl": url}
    assert (client.post(CMDS, json=body, headers=headers).status_code == 201) is taken
    query = enos_required(document, "invokeService") | {"orgId": "app-a", "assetId": device_id}
    query |= {"pendingTtl": 60, "callbackUrl": url}
    reply = client.post(ENOS, query_string=query, json={}, headers=headers)
    assert reply.json["code"] == (0 if taken else 99400), reply.json
