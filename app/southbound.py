"""The device API: devices authenticate with HTTP Basic `deviceId:psk` and take their commands."""

from __future__ import annotations

from flask import Blueprint, request
from marshmallow import ValidationError

from app.apidoc import doc
from app.context import services
from app.schemas import json_body, query_args
from app.schemas.southbound import FetchAnswer, FetchQuery, ResultBody
from devcmd import errors
from devcmd.domain import southbound

bp = Blueprint("southbound", __name__, url_prefix="/southbound/v1/devices/<device_id>/commands")


def _credentials() -> tuple[str | None, str | None]:
    """HTTP Basic's (username, password), each None when absent."""
    credentials = request.authorization
    return (credentials.username, credentials.password) if credentials else (None, None)


def _device_app(device_id: str) -> str:
    return southbound.authenticate(services(), device_id, *_credentials())


@bp.get("")
@doc(
    "Take the next commands (each becomes SENT)",
    query=FetchQuery,
    answers={200: FetchAnswer},
    security="device",
)
def fetch(device_id: str):
    try:
        limit = query_args(FetchQuery)["max"]
    except ValidationError:
        _device_app(device_id)  # credentials are checked first, as on every call
        raise
    fetched = southbound.authenticated_fetch(services(), device_id, *_credentials(), limit)
    return {"commands": fetched}


@bp.post("/<command_id>/ack")
@doc(
    "Acknowledge a command: SENT -> DELIVERED",
    answers={204: None},
    raises=(errors.CommandNotFound, errors.IllegalTransition),
    security="device",
)
def ack(device_id: str, command_id: str):
    southbound.ack(services(), _device_app(device_id), device_id, command_id)
    return "", 204


@bp.post("/<command_id>/result")
@doc(
    "Report a command's result: it ends SUCCESSFUL or FAILED",
    body=ResultBody,
    answers={204: None},
    raises=(errors.CommandNotFound, errors.IllegalTransition),
    security="device",
)
def result(device_id: str, command_id: str):
    app_id = _device_app(device_id)
    body = json_body(ResultBody)
    southbound.finish(
        services(), app_id, device_id, command_id, body["resultCode"], body["resultDetail"]
    )
    return "", 204
