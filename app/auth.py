"""OceanConnect login, token refresh and logout."""

from __future__ import annotations

from flask import Blueprint, request

from app.apidoc import doc
from app.context import services
from app.flow import limited
from app.schemas import form_or_json, json_body, schema
from app.schemas.auth import LoginBody, LogoutBody, RefreshBody, TokenAnswer
from devcmd import errors
from devcmd.domain import auth

bp = Blueprint("auth", __name__, url_prefix="/iocm/app/sec/v1.1.0")


@bp.post("/login")
@doc(
    "Log in: appId + secret for an access token",
    body=LoginBody,
    body_types=("application/x-www-form-urlencoded", "application/json"),
    answers={200: TokenAnswer},
    raises=(
        errors.MissingLoginParameter,
        errors.BadCredentials,
        errors.AppFrozen,
        errors.Throttled,
    ),
)
@limited("login")
def login():
    """Form (as OceanConnect) or JSON `appId` + `secret`, declared or not."""
    data = form_or_json()
    tokens = auth.login(services(), data.get("appId"), data.get("secret"))
    return schema(TokenAnswer).dump(tokens)


@bp.post("/refreshToken")
@doc(
    "Refresh: a new token pair (the refresh token works once)",
    body=RefreshBody,
    body_types=("application/json", "application/x-www-form-urlencoded"),
    answers={200: TokenAnswer},
    raises=(errors.BadCredentials, errors.AppFrozen, errors.TokenInvalid, errors.Throttled),
)
@limited("login")
def refresh():
    body = schema(RefreshBody).load(form_or_json())
    tokens = auth.refresh(services(), body["appId"], body["secret"], body["refreshToken"])
    return schema(TokenAnswer).dump(tokens)


@bp.post("/logout")
@doc(
    "Log out: revoke an access token",
    body=LogoutBody,
    answers={204: None},
    raises=(errors.TokenInvalid,),
)
def logout():
    body = json_body(LogoutBody)
    auth.logout(services(), body["accessToken"], request.headers.get("app_key"))
    return "", 204
