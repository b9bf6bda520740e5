"""The two error envelopes, their codes taken from the catalogues in app/errors.py (so the
OpenAPI document lists every code the handlers can answer)."""

from __future__ import annotations

from marshmallow import fields, validate

from app import errors as catalogue
from app.schemas import BaseSchema
from devcmd.errors import DomainError

HTTP_MEANING = {
    404: "unknown path",
    405: "method not allowed",
    413: "body over 1 MiB",
    415: "unsupported media type",
}


def meaning(exc: type[DomainError]) -> str:
    """One line saying when a domain error happens."""
    return (exc.__doc__ or exc.message).strip().splitlines()[0].rstrip(".")


def oceanconnect_table() -> list[tuple[str, int, str]]:
    """(error_code, HTTP status, meaning) for every OceanConnect answer the handlers give."""
    rows = [(code, status, meaning(exc)) for exc, (status, code) in catalogue.CATALOGUE.items()]
    rows += [(code, status, HTTP_MEANING[status]) for status, code in catalogue.HTTP_CODES.items()]
    status, code = catalogue.INTERNAL
    return [*rows, (code, status, "internal error (never for bad input)")]


def enos_table() -> list[tuple[int, str, str]]:
    """(code, msg, meaning) for every EnOS error answer the handlers give."""
    rows = [(code, msg, meaning(exc)) for exc, (code, msg) in catalogue.ENOS_CATALOGUE.items()]
    rows += [
        (code, msg, f"action={action}: {meaning(exc)}")
        for (action, exc), (code, msg) in catalogue.ENOS_ACTION_CODES.items()
    ]
    rows.append((99404, "Object does not exist", "unknown path"))
    code, msg = catalogue.ENOS_INVALID
    rows.append((code, msg, "unknown action, action called with GET, body over 1 MiB"))
    code, msg = catalogue.ENOS_INTERNAL
    return [*rows, (code, msg, "internal error, answered with HTTP 500")]


def _markdown(header: str, rows: list[tuple]) -> str:
    lines = [header, "| " + " | ".join("---" for _ in header.split("|")[1:-1]) + " |"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


class ErrorAnswer(BaseSchema):
    """OceanConnect's error envelope."""

    error_code = fields.String(
        required=True,
        validate=validate.OneOf(sorted({row[0] for row in oceanconnect_table()})),
        metadata={"description": _markdown("| code | HTTP | when |", oceanconnect_table())},
    )
    error_desc = fields.String(required=True, metadata={"description": "what went wrong"})


class EnosError(BaseSchema):
    """EnOS's envelope of a failure: HTTP 200 (500 for 99500), the outcome in `code`."""

    code = fields.Integer(
        required=True,
        validate=validate.OneOf(sorted({row[0] for row in enos_table()})),
        metadata={"description": _markdown("| code | msg | when |", enos_table())},
    )
    msg = fields.String(required=True)
    submsg = fields.String(required=True, metadata={"description": "what went wrong"})
    requestId = fields.String(required=True)
    data = fields.Constant(None, required=True, allow_none=True)
