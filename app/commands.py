"""OceanConnect device commands: create, query, cancel one."""

from __future__ import annotations

from flask import Blueprint
from marshmallow import ValidationError

from app.apidoc import doc
from app.context import acting_for, app_id, authenticated, prefetched, services
from app.idempotency import idempotent, new_id
from app.schemas import json_body, query_args, schema
from app.schemas.commands import (
    CancelCommandBody,
    CommandsPage,
    CommandsQuery,
    CreateCommandBody,
    DeviceCommandResp,
    command_answer,
)
from app.schemas.notifications import NotificationAnswer, NotificationHistory
from devcmd import errors
from devcmd.domain import commands, notifications
from devcmd.services import Services
from devcmd.store.reads import Read

bp = Blueprint("commands", __name__, url_prefix="/iocm/app/cmd/v1.4.0/deviceCommands")


@bp.post("")
@authenticated
@doc(
    "Create a command (PENDING in its device's queue)",
    body=CreateCommandBody,
    answers={201: DeviceCommandResp},
    raises=(errors.DeviceNotFound, errors.PendingLimitReached),
)
@idempotent()
def create():
    body = json_body(CreateCommandBody)
    device_id, command = body.pop("deviceId"), body.pop("command")
    command = commands.create(services(), app_id(), device_id, command, body, command_id=new_id())
    return command_answer(command), 201


def _query_read(svc: Services, app: str) -> Read | None:
    """The read `query` makes, sent along with admission (None for a query that does not parse:
    the view answers it, after admission, as any other)."""
    try:
        q = query_args(CommandsQuery)
    except ValidationError:
        return None
    window, page = (q["startTime"], q["endTime"]), (q["pageNo"], q["pageSize"])
    return commands.query_read(svc, app, q["deviceId"], *window, *page, q["status"])


@bp.get("")
@acting_for("appId", reading=_query_read)
@doc(
    "Query commands, newest first (optionally only those in some statuses)",
    query=CommandsQuery,
    answers={200: CommandsPage},
)
def query():
    q = query_args(CommandsQuery)
    total, page = commands.query(
        services(),
        app_id(),
        q["deviceId"],
        q["startTime"],
        q["endTime"],
        q["pageNo"],
        q["pageSize"],
        q["status"],
        prefetched(),
    )
    return {
        "pagination": {"pageNo": q["pageNo"], "pageSize": q["pageSize"], "totalSize": total},
        "data": [command_answer(c) for c in page],
    }


@bp.get("/<command_id>/notifications")
@authenticated
@doc(
    "A command's callbacks and their delivery attempts",
    answers={200: NotificationHistory},
    raises=(errors.CommandNotFound,),
)
def notification_history(command_id: str):
    """Our extension: every callback of the command, with its delivery attempts."""
    records = notifications.history(services(), app_id(), command_id)
    return {
        "commandId": command_id,
        "notifications": schema(NotificationAnswer, many=True).dump(records),
    }


@bp.put("/<command_id>")
@authenticated
@doc(
    "Cancel one PENDING command",
    body=CancelCommandBody,
    answers={200: DeviceCommandResp},
    raises=(errors.CommandNotFound, errors.CommandNotCancellable),
)
def cancel(command_id: str):
    json_body(CancelCommandBody)
    return command_answer(commands.cancel(services(), app_id(), command_id))
