"""Maps domain errors to (HTTP status, OceanConnect error_code) and renders the envelope."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from devcmd import errors

log = logging.getLogger(__name__)

CATALOGUE: dict[type[errors.DomainError], tuple[int, str]] = {
    errors.InvalidInput: (400, "100022"),
    errors.MissingLoginParameter: (400, "102202"),
    errors.BadCredentials: (401, "100208"),
    errors.AppFrozen: (403, "100247"),
    errors.TokenInvalid: (401, "1010005"),
    errors.AppKeyMissing: (400, "100220"),
    errors.AppNotFound: (403, "100203"),
    errors.AppExists: (409, "100022"),
    errors.NotAuthorized: (403, "100217"),
    errors.DeviceNotFound: (404, "100418"),
    errors.NodeIdTaken: (409, "100416"),
    errors.CommandNotFound: (404, "100434"),
    errors.CommandNotCancellable: (409, "100435"),
    errors.PendingLimitReached: (400, "100223"),
    errors.IllegalTransition: (409, "200409"),
    errors.DeviceAuthFailed: (401, "200401"),
    errors.TaskNotFound: (404, "100434"),
}

HTTP_CODES = {404: "100022", 405: "100022", 413: "100022", 415: "100022"}


def envelope(status: int, code: str, desc: str):
    response = jsonify(error_code=code, error_desc=desc)
    response.status_code = status
    return response


def flatten(messages, prefix: str = "") -> list[str]:
    """marshmallow's nested messages as `field.path: message` strings."""
    if isinstance(messages, dict):
        return [
            line
            for key, value in messages.items()
            for line in flatten(value, f"{prefix}{key}." if key != "_schema" else prefix)
        ]
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [f"{prefix.rstrip('.') or 'body'}: {' '.join(messages)}"]
    return [line for m in messages for line in flatten(m, prefix)]


def register(app: Flask) -> None:
    """Install the handlers that turn every failure into the `{error_code, error_desc}` envelope."""

    @app.errorhandler(errors.DomainError)
    def _domain(exc: errors.DomainError):
        known = next((cls for cls in type(exc).__mro__ if cls in CATALOGUE), None)
        status, code = CATALOGUE[known] if known else (500, "100001")
        response = envelope(status, code, exc.message)
        if isinstance(exc, errors.DeviceAuthFailed):
            response.headers["WWW-Authenticate"] = 'Basic realm="devcmd devices"'
        return response

    @app.errorhandler(ValidationError)
    def _invalid(exc: ValidationError):
        return envelope(400, "100022", "The input is invalid: " + "; ".join(flatten(exc.messages)))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        code = HTTP_CODES.get(exc.code or 500, "100022" if (exc.code or 500) < 500 else "100001")
        return envelope(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return envelope(500, "100001", "Internal server error.")
