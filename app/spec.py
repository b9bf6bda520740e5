"""Builds the OpenAPI 3 document with apispec: every route of the app (app.url_map) with the
`@doc` note beside it (app/apidoc.py), its schemas converted from marshmallow, its error
answers from the catalogues in app/errors.py. Nothing is written by hand but prose."""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Callable, Iterable
from http import HTTPStatus

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin, OpenAPIConverter
from apispec.ext.marshmallow.common import resolve_schema_cls
from apispec_webframeworks.flask import FlaskPlugin
from flask import Flask
from marshmallow import Schema, fields, validate
from werkzeug.routing import Rule

from app import errors as catalogue
from app.apidoc import Answer, RouteDoc
from app.schemas import MAX_ID, HuaweiTime, identifier
from app.schemas.errors import EnosError, ErrorAnswer, meaning
from app.urlpattern import url_pattern
from devcmd import errors
from devcmd.clock import HUAWEI_PATTERN
from devcmd.domain import idempotency

OPENAPI_VERSION = "3.0.3"
UNDOCUMENTED = {"static", "openapi.static"}  # static files (Swagger UI's)
# Blueprints whose routes answer without the data store's help (/readyz reports its trouble in
# its own answer, /metrics as `devcmd_redis_up`); every other route can meet StorageUnavailable.
STORELESS = {"health", "metrics", "openapi"}
RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}
APP_AUTH = (
    errors.AppKeyMissing,
    errors.TokenInvalid,
    errors.AppFrozen,
    errors.AppNotFound,
    errors.NotAuthorized,
    errors.Throttled,
)
IDEMPOTENCY_ERRORS = (errors.IdempotencyKeyReused, errors.IdempotencyKeyInFlight)
SECURITY_SCHEMES = {
    "app_key": {
        "type": "apiKey",
        "in": "header",
        "name": "app_key",
        "description": "The calling application's appId (sent with `Authorization: Bearer`).",
    },
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "The accessToken from POST /iocm/app/sec/v1.1.0/login.",
    },
    "device": {
        "type": "http",
        "scheme": "basic",
        "description": "The device's `deviceId:psk` (psk from the registration answer).",
    },
}
DESCRIPTION = """Device commands for IoT platforms in two dialects on one core: Huawei
OceanConnect v1.4.0 (`/iocm/...`, errors `{error_code, error_desc}` with a meaningful HTTP
status) and Envision EnOS connect-service v2.1 (`/connect-service/v2.1/commands?action=...`,
every outcome in `{code, msg, submsg, requestId, data}` with HTTP 200, 500 only for 99500);
the device (southbound) API and the health endpoints. Generated from the code (app/spec.py)."""


class Converter(OpenAPIConverter):
    """apispec's field converter, told about our own fields."""

    def init_attribute_functions(self) -> None:
        super().init_attribute_functions()
        self.attribute_functions += [self.huawei_time, self.constant, self.url]

    def huawei_time(self, field, **kwargs) -> dict:
        if not isinstance(field, HuaweiTime):
            return {}
        return {"type": "string", "pattern": HUAWEI_PATTERN, "example": "20170222T164000Z"}

    def url(self, field, **kwargs) -> dict:
        """What a URL field's validator accepts, as a pattern beside `format: uri` (which admits
        any scheme and hosts the validator refuses)."""
        if not isinstance(field, fields.Url):
            return {}
        validator = next(v for v in field.validators if isinstance(v, validate.URL))
        return {"pattern": url_pattern(validator)}

    def constant(self, field, **kwargs) -> dict:
        if not isinstance(field, fields.Constant):
            return {}
        value = field.constant
        kind = {str: "string", int: "integer", bool: "boolean"}.get(type(value))
        return {"enum": [value]} | ({"type": kind} if kind else {"nullable": True})

    def schema2jsonschema(self, schema) -> dict:
        """A schema's JSON schema; fields its `Meta.together` pairs are given both or neither."""
        found = super().schema2jsonschema(schema)
        for first, second in getattr(getattr(schema, "Meta", None), "together", ()):
            found.setdefault("allOf", []).append(_together(first, second))
        return found

    def field2default(self, field, **kwargs) -> dict:
        """No default for times (their defaults mean 'unbounded') nor for a None default."""
        if isinstance(field, HuaweiTime) or field.load_default is None:
            return {}
        return super().field2default(field, **kwargs)


def _together(first: str, second: str) -> dict:
    """Both fields are strings, or neither is (absent or null)."""
    given = [{"required": [n], "properties": {n: {"type": "string"}}} for n in (first, second)]
    both = {
        "required": [first, second],
        "properties": {n: {"type": "string"} for n in (first, second)},
    }
    return {"anyOf": [both, {"not": {"anyOf": given}}]}


def schema_name(schema: type[Schema] | Schema) -> str:
    """Component name: the class name, `Partial` added for a partial schema (a projection)."""
    name = resolve_schema_cls(schema).__name__
    return name + ("Partial" if isinstance(schema, Schema) and schema.partial else "")


class Plugin(MarshmallowPlugin):
    Converter = Converter


def build(app: Flask) -> dict:
    """The document for every route of `app`; raises LookupError for a route without `@doc`."""
    plugin = Plugin(schema_name_resolver=schema_name)
    spec = APISpec(
        title="devcmd",
        version="0.1.0",
        openapi_version=OPENAPI_VERSION,
        plugins=[FlaskPlugin(), plugin],
        info={"description": DESCRIPTION},
    )
    plugin.map_to_openapi_type(fields.Url, "string", "uri")  # apispec says "url", not a format
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    spec.components.schema("ErrorAnswer", schema=ErrorAnswer)
    spec.components.schema("EnosError", schema=EnosError)
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint not in UNDOCUMENTED:
            _add_path(spec, plugin.converter, app, rule)
    return spec.to_dict()


def _add_path(spec: APISpec, converter: Converter, app: Flask, rule: Rule) -> None:
    view = app.view_functions[rule.endpoint]
    note = getattr(view, "openapi", None)
    if not isinstance(note, RouteDoc):
        raise LookupError(f"{rule.rule} ({rule.endpoint}) has no @doc (see app/apidoc.py)")
    path_parameters = [
        {"in": "path", "name": name, "required": True, "schema": converter.field2property(id_)}
        for name, id_ in ((name, identifier()) for name in sorted(rule.arguments))
    ]
    build_operation = _enos_operation if note.dispatch else _operation
    operations = {
        method.lower(): build_operation(converter, view, note, rule, method)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
    }
    spec.path(view=view, app=app, operations=operations, parameters=path_parameters)


def _basics(view: Callable, note: RouteDoc, rule: Rule, method: str) -> dict:
    """operationId, summary, description, tags and security of one operation."""
    operation = {
        "operationId": f"{rule.endpoint.replace('.', '_')}_{method.lower()}",
        "summary": note.summary,
        "tags": [rule.endpoint.partition(".")[0]],
    }
    description = (inspect.getdoc(view) or "").partition("---")[0].strip()
    if description:
        operation["description"] = description
    if getattr(view, "acting_for", None):
        operation["security"] = [{"app_key": [], "bearer": []}]
    elif note.security:
        operation["security"] = [{note.security: []}]
    else:
        operation["security"] = []
    return operation


def _raises(
    view: Callable, note: RouteDoc, rule: Rule, action: str | None = None
) -> tuple[type[errors.DomainError], ...]:
    """What the route (or its EnOS `action`) can raise: its own errors, its authentication's,
    bad input, the store's unavailability (any route that reads or writes Redis) and, where it
    takes an Idempotency-Key, the key's refusals."""
    found = list(APP_AUTH if getattr(view, "acting_for", None) else ())
    if rule.endpoint.partition(".")[0] not in STORELESS:
        found.append(errors.StorageUnavailable)
    if note.security == "device":
        found.append(errors.DeviceAuthFailed)
    if note.body or note.query:
        found.append(errors.InvalidInput)
    if _idempotent(view, action):
        found += [errors.InvalidInput, *IDEMPOTENCY_ERRORS]
    return tuple(dict.fromkeys([*found, *note.raises]))


def _idempotent(view: Callable, action: str | None = None) -> bool:
    """Whether the operation (or the EnOS action) takes an Idempotency-Key."""
    marked = getattr(view, "idempotent", None)
    return marked is True or (marked is not None and marked == action)


def _idempotency_header(converter: Converter, action: str | None = None) -> dict:
    where = f" (action={action} only)" if action else ""
    description = (
        f"Makes this POST safe to retry{where}: the same key from the same application with the "
        "same request (method, path, query, body) within IDEMPOTENCY_TTL (24 h) answers the "
        "first successful answer again (with `Idempotent-Replayed: true`) and creates nothing "
        "more; with another request it is refused (422); while the first is still being "
        "served, a retry waits up to IDEMPOTENCY_WAIT, then gets 409 with Retry-After. A "
        'Structured Fields string (`"key"`) or bare text, 1-255 printable ASCII characters.'
    )
    schema = converter.field2property(
        fields.String(validate=validate.Regexp(idempotency.KEY_PATTERN))
    )
    return {"in": "header", "name": "Idempotency-Key", "schema": schema, "description": description}


def _parameters(converter: Converter, view: Callable, query: type[Schema] | None) -> list[dict]:
    """The query parameters: the query schema's, and the `appId` an app may act for."""
    parameters = converter.schema2parameters(query, location="query") if query else []
    for parameter in parameters:
        parameter["schema"].pop("nullable", None)  # a query value is a string or absent
    acting_for = getattr(view, "acting_for", None)
    if acting_for and acting_for not in {p["name"] for p in parameters}:
        description = (
            "Act for this application (it must have authorized the caller); "
            "absent or empty: the caller itself."
        )
        schema = converter.field2property(fields.String(validate=validate.Length(0, MAX_ID)))
        parameters.append(
            {"in": "query", "name": acting_for, "schema": schema, "description": description}
        )
    return parameters


def _answer(status: int, answer: Answer) -> dict:
    response: dict = {"description": HTTPStatus(status).phrase}
    if isinstance(answer, str):
        schema = {"type": "object" if answer.endswith("json") else "string"}
        response["content"] = {answer: {"schema": schema}}
    elif answer is not None:
        response["content"] = {"application/json": {"schema": answer}}
    return response


def _operation(converter: Converter, view: Callable, note: RouteDoc, rule: Rule, method: str):
    """An OceanConnect, southbound, health or docs operation."""
    operation = _basics(view, note, rule, method)
    operation["parameters"] = _parameters(converter, view, note.query)
    if _idempotent(view):
        operation["parameters"].append(_idempotency_header(converter))
    if note.body:
        content = {kind: {"schema": note.body} for kind in note.body_types}
        operation["requestBody"] = {"required": True, "content": content}
    responses = {str(status): _answer(status, answer) for status, answer in note.answers.items()}
    if rule.rule.startswith(catalogue.ENOS_PREFIX):
        raise ValueError(f"{rule.rule}: EnOS routes are documented with dispatch=")
    raises = _raises(view, note, rule)
    operation["responses"] = responses | _error_responses(raises, bool(note.body))
    return operation


def _error_responses(raises: Iterable[type[errors.DomainError]], has_body: bool) -> dict:
    """OceanConnect error answers by HTTP status, each with the codes it may carry."""
    by_status: dict[int, dict[str, list[str]]] = defaultdict(dict)
    for exc in raises:
        status, code = catalogue.CATALOGUE[exc]
        by_status[status].setdefault(code, []).append(meaning(exc))
    if has_body:
        by_status[413].setdefault(catalogue.HTTP_CODES[413], []).append(
            "body over MAX_CONTENT_LENGTH (1 MiB by default)"
        )
        by_status[415].setdefault(catalogue.HTTP_CODES[415], []).append(
            "a Content-Type other than JSON"
        )
    status, code = catalogue.INTERNAL
    by_status[status][code] = ["internal error (never for bad input)"]
    responses = {str(s): _error_response(codes) for s, codes in sorted(by_status.items())}
    if "401" in responses and errors.DeviceAuthFailed in raises:
        challenge = {"schema": {"type": "string"}, "description": 'Basic realm="devcmd devices"'}
        responses["401"]["headers"] = {"WWW-Authenticate": challenge}
    if "503" in responses:
        responses["503"]["headers"] = RETRY_AFTER
    return responses


def _error_response(codes: dict[str, list[str]]) -> dict:
    described = "; ".join(f"`{code}`: {', '.join(why)}" for code, why in codes.items())
    examples = {
        code: {"summary": why[0], "value": {"error_code": code, "error_desc": why[0]}}
        for code, why in codes.items()
    }
    schema = _narrowed("ErrorAnswer", "error_code", sorted(codes))
    return {
        "description": described,
        "content": {"application/json": {"schema": schema, "examples": examples}},
    }


def _narrowed(component: str, field: str, codes: list) -> dict:
    """The component's error envelope with `field` limited to the codes of one operation."""
    return {
        "allOf": [
            {"$ref": f"#/components/schemas/{component}"},
            {"type": "object", "properties": {field: {"enum": codes}}},
        ]
    }


def _enos_operation(converter: Converter, view: Callable, note: RouteDoc, rule, method: str):
    """One EnOS operation covering every action the method may call (`?action=`): EnOS
    dispatches on a query parameter, which OpenAPI cannot key operations on."""
    operation = _basics(view, note, rule, method)
    parameter, table = note.dispatch
    actions = {name: fn.openapi for name, (fn, methods) in table.items() if method in methods}
    codes = {
        name: _enos_codes(name, _raises(view, doc, rule, name)) for name, doc in actions.items()
    }
    described = [operation.get("description", ""), *_action_lines(parameter, actions, codes)]
    operation["description"] = "\n\n".join(line for line in described if line)
    choice = {"type": "string", "enum": list(actions)}
    operation["parameters"] = [
        {"in": "query", "name": parameter, "required": True, "schema": choice},
        *_merged_parameters(converter, view, actions),
    ]
    marked = getattr(view, "idempotent", None)
    if marked and (marked is True or marked in actions):
        operation["parameters"].append(
            _idempotency_header(converter, None if marked is True else marked)
        )
    bodies = list(dict.fromkeys(doc.body for doc in actions.values() if doc.body))
    if bodies and method == "POST":
        schema = bodies[0] if len(bodies) == 1 else {"anyOf": bodies}
        content = {"application/json": {"schema": schema}}
        operation["requestBody"] = {"required": False, "content": content}
    operation["responses"] = _enos_responses(actions, codes)
    return operation


def _enos_codes(action: str, raises: Iterable[type[errors.DomainError]]) -> dict[int, list[str]]:
    """EnOS code -> what causes it, for one action (the dispatch's own 99400 included)."""
    found: dict[int, list[str]] = defaultdict(list)
    found[catalogue.ENOS_INVALID[0]].append("unknown action, or a write called with GET")
    for exc in (exc for exc in raises if exc not in catalogue.ENOS_STATUS):
        code, _ = catalogue.ENOS_ACTION_CODES.get(
            (action, exc), catalogue.ENOS_CATALOGUE.get(exc, catalogue.ENOS_INTERNAL)
        )
        found[code].append(meaning(exc))
    return dict(found)


def _action_lines(parameter: str, actions: dict[str, RouteDoc], codes: dict) -> list[str]:
    lines = []
    for name, doc in actions.items():
        query = ", ".join(doc.query._declared_fields) if doc.query else "none"
        body = ", ".join(doc.body._declared_fields) if doc.body else "none"
        errs = "; ".join(f"`{c}` {', '.join(why)}" for c, why in sorted(codes[name].items()))
        lines.append(
            f"**{parameter}={name}**: {doc.summary}. Query: {query}. Body: {body}. "
            f"Answer: {schema_name(doc.answers[200])}. Errors: {errs}."
        )
    return lines


def _merged_parameters(converter: Converter, view: Callable, actions: dict[str, RouteDoc]):
    """The union of the actions' query parameters; required where every action requires it.
    `x-required-for` lists the actions that require it (machine-readable, for tests and tools)."""
    merged: dict[str, dict] = {}
    users: dict[str, list[str]] = defaultdict(list)
    for name, doc in actions.items():
        for parameter in _parameters(converter, view, doc.query):
            kept = merged.setdefault(parameter["name"], dict(parameter) | {"x-required-for": []})
            kept["required"] = kept.get("required", False) and parameter.get("required", False)
            if parameter.get("required"):
                kept["x-required-for"].append(name)
            required = " (required)" if parameter.get("required") else ""
            users[parameter["name"]].append(name + required)
    for key, parameter in merged.items():
        parameter["required"] = parameter["required"] and len(users[key]) == len(actions)
        if len(users[key]) < len(actions) or not parameter["required"]:
            known = parameter.get("description", "")
            parameter["description"] = f"{known} Actions: {', '.join(users[key])}.".strip()
    return list(merged.values())


def _enos_responses(actions: dict[str, RouteDoc], codes: dict[str, dict]) -> dict:
    """200 with the action's envelope or an EnosError (EnOS answers outcomes in `code`)."""
    every = sorted({code for found in codes.values() for code in found})
    answers = list(dict.fromkeys(doc.answers[200] for doc in actions.values()))
    schema = {"anyOf": [*answers, _narrowed("EnosError", "code", every)]}
    internal = _narrowed("EnosError", "code", [catalogue.ENOS_INTERNAL[0]])
    own_status = [catalogue.ENOS_CATALOGUE[exc][0] for exc in catalogue.ENOS_STATUS]
    unavailable = _narrowed("EnosError", "code", own_status)
    return {
        "200": {
            "description": "The action's answer (`code` 0) or its failure (`code` listed below)",
            "content": {"application/json": {"schema": schema}},
        },
        "500": {
            "description": "`99500`: internal error",
            "content": {"application/json": {"schema": internal}},
        },
        "503": {
            "description": "`99503`: the data store or broker is unavailable; retry later",
            "headers": RETRY_AFTER,
            "content": {"application/json": {"schema": unavailable}},
        },
    }
