"""OceanConnect device commands: create, query, cancel one."""

from __future__ import annotations

from flask import Blueprint

from app.context import app_id, authenticated, services
from app.schemas import json_body, query_args
from app.schemas.commands import (
    CancelCommandBody,
    CommandsQuery,
    CreateCommandBody,
    command_answer,
)
from app.schemas.notifications import NotificationAnswer
from devcmd.domain import commands, notifications

bp = Blueprint("commands", __name__, url_prefix="/iocm/app/cmd/v1.4.0/deviceCommands")


@bp.post("")
@authenticated
def create():
    body = json_body(CreateCommandBody())
    command = commands.create(services(), app_id(), body.pop("deviceId"), body.pop("command"), body)
    return command_answer(command), 201


@bp.get("")
@authenticated
def query():
    q = query_args(CommandsQuery())
    total, page = commands.query(
        services(),
        app_id(),
        q["deviceId"],
        q["startTime"],
        q["endTime"],
        q["pageNo"],
        q["pageSize"],
    )
    return {
        "pagination": {"pageNo": q["pageNo"], "pageSize": q["pageSize"], "totalSize": total},
        "data": [command_answer(c) for c in page],
    }


@bp.get("/<command_id>/notifications")
@authenticated
def notification_history(command_id: str):
    """Our extension: every callback of the command, with its delivery attempts."""
    records = notifications.history(services(), app_id(), command_id)
    return {"commandId": command_id, "notifications": NotificationAnswer(many=True).dump(records)}


@bp.put("/<command_id>")
@authenticated
def cancel(command_id: str):
    json_body(CancelCommandBody())
    return command_answer(commands.cancel(services(), app_id(), command_id))
