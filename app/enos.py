"""EnOS connect-service v2.1 commands: `/connect-service/v2.1/commands?action=...&orgId=...`.

Authentication is OceanConnect's (`app_key` + `Authorization: Bearer`); `orgId` names the
application acted for. Every answer is `{code, msg, submsg, requestId, data}` (docs/enos.md).
"""

from __future__ import annotations

from flask import Blueprint, g, request

from app.apidoc import doc
from app.context import acting_for, app_id, request_id, services
from app.idempotency import idempotent, new_id
from app.schemas import BaseSchema, optional_json_body, query_args, schema
from app.schemas.enos import (
    CancelAnswer,
    CancelQuery,
    DeviceQuery,
    GetAnswer,
    GetQuery,
    InvokeAnswer,
    InvokeBody,
    InvokeQuery,
    Pagination,
    SearchAnswer,
    SearchBody,
    command_answer,
    parse_expression,
    project,
)
from devcmd import errors
from devcmd.domain import enos

bp = Blueprint("enos", __name__, url_prefix="/connect-service/v2.1")


def _device(kind: type[DeviceQuery]) -> tuple[dict, dict]:
    """The parsed query (schema `kind`) and the device it names."""
    query = query_args(kind)
    return query, enos.find_device(services(), app_id(), query)


def _commands(records: list[dict], device: dict) -> list[dict]:
    default_timeout = round(services().config.ack_timeout)
    return [command_answer(record, device, default_timeout) for record in records]


@doc(
    "Cancel one cached command (commandId) or all of the device's, within the request",
    query=CancelQuery,
    answers={200: CancelAnswer},
    raises=(
        errors.DeviceNotFound,
        errors.CommandNotFound,
        errors.CommandNotCancellable,
        errors.ScopeTooLarge,
        errors.Congested,
    ),
)
def cancel() -> dict:
    optional_json_body(BaseSchema)  # no body is read, but one sent must be a JSON object
    query, device = _device(CancelQuery)
    cancelled = enos.cancel(services(), app_id(), device["deviceId"], query["commandId"])
    return {"data": _commands(cancelled, device)}


@doc(
    "Get one command",
    query=GetQuery,
    answers={200: GetAnswer},
    raises=(errors.DeviceNotFound, errors.CommandNotFound),
)
def get() -> dict:
    optional_json_body(BaseSchema)  # no body is read, but one sent must be a JSON object
    query, device = _device(GetQuery)
    command = enos.get_command(services(), app_id(), device["deviceId"], query["commandId"])
    return {"data": _commands([command], device)[0]}


@doc(
    "Search the device's commands, newest first (100 a page by default)",
    query=DeviceQuery,
    body=SearchBody,
    answers={200: SearchAnswer},
    raises=(errors.DeviceNotFound,),
)
def search() -> dict:
    _, device = _device(DeviceQuery)
    body = optional_json_body(SearchBody)
    page = body["pagination"] or schema(Pagination).load({})
    total, records = enos.search(
        services(),
        app_id(),
        device["deviceId"],
        parse_expression(body["expression"]),
        page["pageNo"],
        page["pageSize"],
    )
    data = [project(c, body["projection"]) for c in _commands(records, device)]
    return {"data": data, "pagination": page | {"totalSize": total}}


@doc(
    "Invoke a service: cached (pendingTtl > 0) or instant (waits for the result)",
    query=InvokeQuery,
    body=InvokeBody,
    answers={200: InvokeAnswer},
    raises=(errors.DeviceNotFound, errors.PendingLimitReached),
)
def invoke_service() -> dict:
    query, device = _device(InvokeQuery)
    body = optional_json_body(InvokeBody)
    data = enos.invoke_service(
        services(),
        app_id(),
        device["deviceId"],
        query["serviceId"],
        body["inputData"] or {},
        query,
        new_id(),
    )
    return {"data": data}


READS, WRITES = ("GET", "POST"), ("POST",)
ACTIONS = {
    "cancel": (cancel, WRITES),
    "get": (get, READS),
    "search": (search, READS),
    "invokeService": (invoke_service, WRITES),
}


@bp.route("/commands", methods=["GET", "POST"])
@acting_for("orgId")
@doc("EnOS commands: one path, the action in ?action=", dispatch=("action", ACTIONS))
@idempotent(action="invokeService")
def commands():
    """Dispatch on `action`; reads take GET or POST, writes POST only."""
    action = request.args.get("action", "")
    view, methods = ACTIONS.get(action, (None, ()))
    if view is None:
        raise errors.InvalidInput("action", f"must be one of {', '.join(ACTIONS)}")
    if request.method not in methods:
        raise errors.InvalidInput("action", f"{action} is called with POST")
    g.enos_action = action
    return {"code": 0, "msg": "Success", "submsg": None, "requestId": request_id(), **view()}
