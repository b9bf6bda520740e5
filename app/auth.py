"""OceanConnect login, token refresh and logout."""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, request

from app.context import services
from app.flow import limited
from app.schemas import json_body
from app.schemas.auth import LogoutBody, RefreshBody, TokenAnswer
from devcmd.domain import auth

bp = Blueprint("auth", __name__, url_prefix="/iocm/app/sec/v1.1.0")


@bp.post("/login")
@limited("login")
def login():
    """Form (as OceanConnect) or JSON `appId` + `secret`."""
    data = request.form or request.get_json(silent=True) or {}
    if not isinstance(data, Mapping):
        data = {}
    tokens = auth.login(services(), data.get("appId"), data.get("secret"))
    return TokenAnswer().dump(tokens)


@bp.post("/refreshToken")
@limited("login")
def refresh():
    body = json_body(RefreshBody())
    tokens = auth.refresh(services(), body["appId"], body["secret"], body["refreshToken"])
    return TokenAnswer().dump(tokens)


@bp.post("/logout")
def logout():
    body = json_body(LogoutBody())
    auth.logout(services(), body["accessToken"])
    return "", 204
