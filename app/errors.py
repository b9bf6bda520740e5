"""Maps domain errors to each dialect's codes and renders its envelope: OceanConnect's
`{error_code, error_desc}` with a meaningful HTTP status, EnOS's `{code, msg, submsg,
requestId, data}` (for paths under /connect-service/)."""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify, request
from flask_limiter import RateLimitExceeded
from kombu.exceptions import OperationalError
from marshmallow import ValidationError
from redis import RedisError
from werkzeug.exceptions import HTTPException

from app.context import request_id, services
from devcmd import errors, faults

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
    errors.IdentityTaken: (409, "100416"),
    errors.CommandNotFound: (404, "100434"),
    errors.CommandNotCancellable: (409, "100435"),
    errors.PendingLimitReached: (400, "100223"),
    errors.IllegalTransition: (409, "200409"),
    errors.DeviceAuthFailed: (401, "200401"),
    errors.TaskNotFound: (404, "100434"),
    errors.Congested: (503, "100501"),
    errors.Throttled: (403, "1010009"),
    errors.IdempotencyKeyReused: (422, "100422"),
    errors.IdempotencyKeyInFlight: (409, "100409"),
    errors.StorageUnavailable: (503, "100503"),
}

HTTP_CODES = {404: "100022", 405: "100022", 413: "100022", 415: "100022"}
INTERNAL = (500, "100001")

ENOS_PREFIX = "/connect-service/"
ENOS_INVALID = (99400, "Invalid parameter")
ENOS_INTERNAL = (99500, "Internal server error")
ENOS_CATALOGUE: dict[type[errors.DomainError], tuple[int, str]] = {
    errors.InvalidInput: ENOS_INVALID,
    errors.AppKeyMissing: (99401, "Authentication failed"),
    errors.TokenInvalid: (99401, "Authentication failed"),
    errors.AppFrozen: (99403, "No permission"),
    errors.AppNotFound: (99403, "No permission"),
    errors.NotAuthorized: (99403, "No permission"),
    errors.DeviceNotFound: (99404, "Object does not exist"),
    errors.CommandNotFound: (99404, "Object does not exist"),
    errors.CommandNotCancellable: (99409, "Command cannot be cancelled"),
    errors.ScopeTooLarge: (99413, "Too many cached commands for one request"),
    errors.PendingLimitReached: (11902, "Cached command limit reached"),
    errors.Congested: (99503, "Service busy, retry later"),
    errors.Throttled: (99429, "Too many requests"),
    errors.IdempotencyKeyReused: (99422, "Idempotency-Key used with another request"),
    errors.IdempotencyKeyInFlight: (99425, "Request with this Idempotency-Key in progress"),
    errors.StorageUnavailable: (99503, "Service unavailable, retry later"),
}
# EnOS answers outcomes with HTTP 200; these are answered with their own status as well, for
# gateways and load balancers that retry on it.
ENOS_STATUS = {errors.StorageUnavailable: 503}
# action=get reports an unknown command with its own code, as EnOS documents it.
ENOS_ACTION_CODES = {("get", errors.CommandNotFound): (11404, "commandId not found")}


def envelope(status: int, code: str, desc: str):
    response = jsonify(error_code=code, error_desc=desc)
    response.status_code = status
    return response


def enos_envelope(code: int, msg: str, submsg: str, status: int = 200):
    """EnOS answers every outcome with HTTP 200 and says it in `code`, as its gateway does (an
    `enos-poseidon` client gets nothing back from a non-2xx answer); only 99500 is a 500."""
    response = jsonify(code=code, msg=msg, submsg=submsg, requestId=request_id(), data=None)
    response.status_code = status
    return response


def is_enos() -> bool:
    return request.path.startswith(ENOS_PREFIX)


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


def _enos_domain(exc: errors.DomainError):
    known = next((cls for cls in type(exc).__mro__ if cls in ENOS_CATALOGUE), None)
    code, msg = ENOS_CATALOGUE[known] if known else ENOS_INTERNAL
    code, msg = ENOS_ACTION_CODES.get((g.get("enos_action"), known), (code, msg))
    status = 500 if code == ENOS_INTERNAL[0] else ENOS_STATUS.get(known, 200)
    return enos_envelope(code, msg, exc.message, status)


def _enos_http(status: int, desc: str):
    """Routing and protocol failures (unknown path, body too large) under /connect-service/."""
    if status >= 500:
        return enos_envelope(*ENOS_INTERNAL, desc, 500)
    code, msg = (99404, "Object does not exist") if status == 404 else ENOS_INVALID
    return enos_envelope(code, msg, desc)


def _with_protocol_headers(response, exc: HTTPException):
    """Keep the headers the HTTP error carries besides its body's type (a 405's `Allow`)."""
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def register(app: Flask) -> None:
    """Install the handlers that turn every failure into its dialect's envelope."""

    @app.errorhandler(errors.DomainError)
    def _domain(exc: errors.DomainError):
        if is_enos():
            response = _enos_domain(exc)
        else:
            known = next((cls for cls in type(exc).__mro__ if cls in CATALOGUE), None)
            status, code = CATALOGUE[known] if known else INTERNAL
            response = envelope(status, code, exc.message)
        if isinstance(exc, errors.DeviceAuthFailed):
            response.headers["WWW-Authenticate"] = 'Basic realm="devcmd devices"'
        if getattr(exc, "retry_after", None) is not None:
            # Set here too: app.flow's hook, which writes it again over flask-limiter's window,
            # does not run when an earlier after-request hook fails on the same outage.
            response.headers["Retry-After"] = str(exc.retry_after)
            g.retry_after = exc.retry_after
        return response

    @app.errorhandler(RedisError)
    @app.errorhandler(OperationalError)
    def _store(exc: Exception):
        """The data store or broker in trouble (down, slow, loading, read-only, full): 503
        with Retry-After; any other Redis error is a bug (500)."""
        trouble = faults.cause(exc)
        if trouble is None:
            return _unexpected(exc)
        log.warning("storage unavailable: %s: %s", trouble, str(exc)[:200])
        return _domain(errors.StorageUnavailable(trouble, services().config.storage_retry_after))

    @app.errorhandler(RateLimitExceeded)
    def _throttled(exc: RateLimitExceeded):
        """Flow control (app.flow); flask-limiter adds Retry-After and X-RateLimit-* after."""
        return _domain(
            errors.Throttled(f"Too many calls: the limit is {exc.limit.limit}; see Retry-After.")
        )

    @app.errorhandler(ValidationError)
    def _invalid(exc: ValidationError):
        desc = "; ".join(flatten(exc.messages))
        if is_enos():
            return enos_envelope(*ENOS_INVALID, desc)
        return envelope(400, "100022", "The input is invalid: " + desc)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        desc = exc.description or exc.name
        if status == 413:
            desc = f"The request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes."
        if is_enos():
            return _enos_http(status, desc)
        code = HTTP_CODES.get(status, "100022" if status < 500 else INTERNAL[1])
        return _with_protocol_headers(envelope(status, code, desc), exc)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        if is_enos():
            return enos_envelope(*ENOS_INTERNAL, "Internal server error.", 500)
        return envelope(*INTERNAL, "Internal server error.")
