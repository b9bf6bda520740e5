"""EnOS connect-service v2.1 parameters, bodies, search expressions and the Command answer."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from marshmallow import ValidationError, fields, validate

from app.schemas import (
    BaseSchema,
    QueryInteger,
    StrictInteger,
    callback_url,
    enos_name,
    identifier,
)
from app.schemas.commands import paras_field
from devcmd.domain.enos import STATES, Filters, output_data, tsl_identifier

MAX_PENDING_TTL = 172_800
STATE_NUMBERS = sorted(set(STATES.values()))
STATE_DOC = {
    "description": "1 Created (PENDING), 2 Canceled, 3 Expired, 4 Sent (SENT, DELIVERED), "
    "5 Succeeded, 6 Failed, 7 Response timed out (TIMEOUT)"
}
EXPRESSION_TIME = "%Y-%m-%d %H:%M:%S"


class DeviceQuery(BaseSchema):
    """Every action: the organization and the device, by assetId or productKey + deviceKey."""

    orgId = identifier(
        required=True,
        metadata={"description": "The application: the caller or one that authorized it."},
    )
    assetId = enos_name(
        load_default=None, metadata={"description": "The device, or productKey + deviceKey."}
    )
    productKey = enos_name(load_default=None, metadata={"description": "With deviceKey."})
    deviceKey = enos_name(load_default=None, metadata={"description": "With productKey."})


class CancelQuery(DeviceQuery):
    commandId = identifier(load_default=None)


class GetQuery(DeviceQuery):
    commandId = identifier(required=True)


class InvokeQuery(DeviceQuery):
    serviceId = identifier(required=True)
    pendingTtl = QueryInteger(load_default=0, validate=validate.Range(0, MAX_PENDING_TTL))
    timeout = QueryInteger(load_default=30, validate=validate.Range(1, 60))
    # Our extension: EnOS has no per-command callback; OceanConnect's rules apply.
    callbackUrl = callback_url()


class InvokeBody(BaseSchema):
    inputData = paras_field()


class Pagination(BaseSchema):
    pageNo = StrictInteger(load_default=1, validate=validate.Range(1, 1_000_000))
    pageSize = StrictInteger(load_default=100, validate=validate.Range(1, 1000))


class SearchBody(BaseSchema):
    expression = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=2000)
    )
    pagination = fields.Nested(Pagination, load_default=None, allow_none=True)
    projection = fields.List(identifier(), load_default=None, allow_none=True)


_CONDITION = re.compile(
    r"""\s*(?:
        state\s*=\s*(?P<state>\d+)
      | commandName\.(?P<locale>[A-Za-z_]+)\s+like\s+(?P<q1>["'])(?P<name>.*?)(?P=q1)
      | createTime\s*(?P<op>>=|<=|=|>|<)\s*(?P<q2>["'])(?P<time>[^"']*)(?P=q2)
    )\s*""",
    re.IGNORECASE | re.VERBOSE,
)
_AND = re.compile(r"AND\b\s*", re.IGNORECASE)


def parse_expression(text: str | None) -> Filters:
    """Read `state = N`, `commandName.<locale> like "..."` and `createTime <op> "YYYY-MM-DD
    HH:mm:ss"` (UTC) joined by AND. Raises ValidationError naming what could not be read."""
    found = {"states": None, "names": (), "start": 0, "end": 2**53}
    position, text = 0, (text or "").strip()
    while position < len(text):
        match = _CONDITION.match(text, position)
        if not match:
            raise _invalid(f"cannot read the condition at {text[position : position + 40]!r}")
        _apply(found, match)
        position = match.end()
        joined = _AND.match(text, position)
        if position < len(text) and not joined:
            raise _invalid(f"expected AND at {text[position : position + 40]!r}")
        position = joined.end() if joined else position
    return Filters(**found)


def _apply(found: dict, match: re.Match) -> None:
    if match["state"] is not None:
        state = int(match["state"])
        if not 1 <= state <= 7:
            raise _invalid("state must be 1-7")
        found["states"] = frozenset({state}) & (found["states"] or frozenset({state}))
    elif match["locale"] is not None:
        found["names"] += (match["name"],)
    else:
        second = _time(match["time"])
        low, high = {
            ">": (second + 1000, None), ">=": (second, None), "=": (second, second + 999),
            "<": (None, second - 1), "<=": (None, second + 999),
        }[match["op"]]  # fmt: skip
        found["start"] = max(found["start"], low if low is not None else 0)
        found["end"] = min(found["end"], high if high is not None else 2**53)


def _time(text: str) -> int:
    try:
        parsed = datetime.strptime(text, EXPRESSION_TIME).replace(tzinfo=UTC)
    except ValueError as exc:
        raise _invalid(f"createTime {text!r} is not of the form YYYY-MM-DD HH:mm:ss") from exc
    return int(parsed.timestamp() * 1000)


def _invalid(reason: str) -> ValidationError:
    return ValidationError({"expression": [reason]})


class CommandName(BaseSchema):
    defaultValue = fields.String(required=True)
    i18nValue = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


class EnosCommand(BaseSchema):
    """EnOS's Command, as `command_answer` writes it (times in epoch milliseconds)."""

    commandId = fields.String(required=True)
    orgId = fields.String(required=True)
    productKey = fields.String(required=True, allow_none=True)
    deviceKey = fields.String(required=True, allow_none=True)
    assetId = fields.String(required=True)
    createTime = fields.Integer(required=True)
    createLocalTime = fields.Integer(required=True)
    createLocaltime = fields.Integer(required=True, metadata={"description": "EnOS spells both"})
    commandType = fields.Integer(
        required=True,
        validate=validate.OneOf([1, 2]),
        metadata={"description": "1 measurement point setting, 2 service invocation"},
    )
    commandName = fields.Nested(CommandName, required=True)
    timeout = fields.Integer(required=True)
    pendingTtl = fields.Integer(required=True)
    state = fields.Integer(
        required=True, validate=validate.OneOf(STATE_NUMBERS), metadata=STATE_DOC
    )
    tslIdentifier = fields.String(required=True)
    inputData = fields.Dict(keys=fields.String(), required=True)
    outputData = fields.Raw(required=True, allow_none=True)


class Envelope(BaseSchema):
    """EnOS's envelope of a success (failures: EnosError)."""

    code = fields.Integer(required=True, validate=validate.OneOf([0]))
    msg = fields.String(required=True, validate=validate.OneOf(["Success"]))
    submsg = fields.String(required=True, allow_none=True)
    requestId = fields.String(required=True)


class CancelAnswer(Envelope):
    data = fields.List(fields.Nested(EnosCommand), required=True)


class GetAnswer(Envelope):
    data = fields.Nested(EnosCommand, required=True)


class SearchPage(BaseSchema):
    pageNo = fields.Integer(required=True, validate=validate.Range(1, 1_000_000))
    pageSize = fields.Integer(required=True, validate=validate.Range(1, 1000))
    totalSize = fields.Integer(required=True, validate=validate.Range(min=0))


class SearchAnswer(Envelope):
    # A `projection` keeps only the fields it names.
    data = fields.List(fields.Nested(EnosCommand(partial=True)), required=True)
    pagination = fields.Nested(SearchPage, required=True)


class Invoked(BaseSchema):
    commandId = fields.String(required=True)
    outputData = fields.Raw(allow_none=True, metadata={"description": "instant commands only"})
    state = fields.Integer(validate=validate.OneOf(STATE_NUMBERS), metadata=STATE_DOC)


class InvokeAnswer(Envelope):
    data = fields.Nested(Invoked, required=True)


def command_answer(record: dict, device: dict, default_timeout: int) -> dict:
    """EnOS's Command structure (times as epoch milliseconds). A plain function, like
    OceanConnect's DeviceCommandResp: a cancel-all answer can list thousands."""
    name = tsl_identifier(record)
    created = int(record["creationTime"])
    return {
        "commandId": record["commandId"],
        "orgId": record["appId"],
        "productKey": device.get("productKey"),
        "deviceKey": device.get("deviceKey"),
        "assetId": device.get("assetId") or device["deviceId"],
        "createTime": created,
        "createLocalTime": created,
        "createLocaltime": created,
        "commandType": record.get("commandType", 2),
        "commandName": {"defaultValue": name, "i18nValue": {}},
        "timeout": record.get("timeout", default_timeout),
        "pendingTtl": record.get("pendingTtl", record["expireTime"]),
        "state": STATES[record["status"]],
        "tslIdentifier": name,
        "inputData": record["paras"],
        "outputData": output_data(record),
    }


def project(answer: dict, paths: list[str] | None) -> dict:
    """Keep only the named fields (`commandName.defaultValue` reaches inside); all if None."""
    if not paths:
        return answer
    kept: dict = {}
    for path in paths:
        head, _, rest = path.partition(".")
        if head not in answer:
            continue
        value = answer[head]
        if not rest or not isinstance(value, dict):
            kept[head] = value
        elif rest in value:
            kept.setdefault(head, {})[rest] = value[rest]
    return kept
