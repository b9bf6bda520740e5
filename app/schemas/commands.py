"""Command bodies, query parameters and the DeviceCommandResp answer."""

import orjson
from flask import current_app
from marshmallow import ValidationError, fields, validate

from app.schemas import (
    BaseSchema,
    HuaweiTime,
    PageAnswer,
    PageQuery,
    StrictInteger,
    callback_url,
    identifier,
)
from devcmd import errors
from devcmd.clock import to_huawei
from devcmd.domain.commands import STATUS_ALIASES, STATUSES, canonical_statuses
from devcmd.domain.southbound import RESULT_CODES

MAX_EXPIRE = 2**31 - 1
STATUS_NAME = "|".join([*STATUSES, *STATUS_ALIASES])
STATUS_FILTER_DOC = (
    "Only commands now in one of these statuses, comma-separated (`PENDING,SENT`); `DEFAULT` is "
    "accepted for PENDING (older OceanConnect pages), an unknown status is 400 100022. "
    "`totalSize` is exact. Cost: each device keeps an index per status, so with `deviceId` the "
    "query reads only the asked statuses' indexes of that device; without it, it counts them on "
    "every device of the application that has had commands (one pipelined count per device "
    "and status) and merges the page from those that match: the cost grows with the "
    "application's devices and with (pageNo + 1) x pageSize, never with the commands in other "
    "statuses; moves left by revocation sweeps are applied once, by the first query after them."
)


def depth(value) -> int:
    """How deeply objects and arrays nest in `value` (`{}` is 1, `{"a": [1]}` is 2)."""
    deepest, level = 0, [(value, 1)]
    while level:
        item, at = level.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, at)
            children = item.values() if isinstance(item, dict) else item
            level.extend((child, at + 1) for child in children)
    return deepest


PARAS_RULES = (
    "Any JSON object; its integers must fit in 64 bits (signed, or unsigned up to 2^64-1), "
    "at most MAX_PARAS_DEPTH (16) levels deep and MAX_PARAS_BYTES (65536) long as JSON."
)


def storable(paras: dict | None) -> None:
    """paras (EnOS inputData) is stored and answered as JSON with 64-bit integers (as
    OceanConnect's Long), at most MAX_PARAS_DEPTH deep and MAX_PARAS_BYTES long as JSON."""
    config = current_app.extensions["devcmd"].config
    if depth(paras) > config.max_paras_depth:
        raise ValidationError(f"nests deeper than {config.max_paras_depth} levels")
    try:
        size = len(orjson.dumps(paras))
    except TypeError as exc:
        raise ValidationError("integers must fit in 64 bits") from exc
    if size > config.max_paras_bytes:
        raise ValidationError(f"is {size} bytes as JSON, more than {config.max_paras_bytes}")


def paras_field() -> fields.Dict:
    """A command's free-form JSON object: OceanConnect's `paras`, EnOS's `inputData` (optional,
    `{}` when absent), checked by `storable`."""
    return fields.Dict(
        keys=fields.String(),
        load_default=dict,
        allow_none=True,
        validate=storable,
        metadata={"description": PARAS_RULES},
    )


class CommandDTO(BaseSchema):
    serviceId = identifier(required=True)
    method = fields.String(required=True, validate=validate.Length(1, 128))
    paras = paras_field()


class CreateCommandBody(BaseSchema):
    deviceId = identifier(required=True)
    command = fields.Nested(CommandDTO, required=True)
    callbackUrl = callback_url(allow_none=True)
    expireTime = StrictInteger(
        load_default=None, allow_none=True, validate=validate.Range(0, MAX_EXPIRE)
    )
    maxRetransmit = StrictInteger(load_default=None, allow_none=True, validate=validate.Range(0, 3))


class CancelCommandBody(BaseSchema):
    status = fields.String(required=True, validate=validate.OneOf(["CANCELED"]))


class StatusFilter(fields.String):
    """Comma-separated statuses, loaded as the list of statuses they mean (aliases resolved)."""

    def _deserialize(self, value, attr, data, **kwargs) -> list[str]:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            wanted = canonical_statuses(name.strip() for name in text.split(","))
        except errors.InvalidInput as exc:
            raise ValidationError(str(exc).removeprefix("status: ")) from exc
        return [status for status in STATUSES if status in wanted]


class CommandsQuery(PageQuery):
    deviceId = identifier(load_default=None)
    status = StatusFilter(
        load_default=None,
        metadata={
            "description": STATUS_FILTER_DOC,
            "pattern": rf"^ *({STATUS_NAME}) *(, *({STATUS_NAME}) *)*$",
            "example": "PENDING,SENT",
        },
    )


class CommandResult(BaseSchema):
    """What the device reported (southbound `result`)."""

    resultCode = fields.String(required=True, validate=validate.OneOf(RESULT_CODES))
    resultDetail = fields.Raw(required=True, allow_none=True)


class DeviceCommandResp(BaseSchema):
    """OceanConnect's DeviceCommandResp, as `command_answer` writes it (documents the answer;
    tests/unit/test_openapi.py checks real answers against it)."""

    commandId = fields.String(required=True)
    appId = fields.String(required=True)
    deviceId = fields.String(required=True)
    command = fields.Nested(CommandDTO, required=True)
    callbackUrl = fields.String(required=True, allow_none=True)
    expireTime = fields.Integer(required=True, validate=validate.Range(0, MAX_EXPIRE))
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    result = fields.Nested(CommandResult, required=True, allow_none=True)
    creationTime = HuaweiTime(required=True)
    executeTime = HuaweiTime(required=True, allow_none=True)
    platformIssuedTime = HuaweiTime(required=True, allow_none=True)
    deliveredTime = HuaweiTime(required=True, allow_none=True)
    issuedTimes = fields.Integer(required=True, validate=validate.Range(min=0))
    maxRetransmit = fields.Integer(required=True, validate=validate.Range(0, 3))


class CommandsPage(BaseSchema):
    pagination = fields.Nested(PageAnswer, required=True)
    data = fields.List(fields.Nested(DeviceCommandResp), required=True)


def command_answer(record: dict) -> dict:
    """OceanConnect's DeviceCommandResp.

    A plain function rather than a marshmallow dump: pages carry up to 1,000 of these and the
    revocation answer must cost the same for any backlog, so this path is kept lean.
    """
    return {
        "commandId": record["commandId"],
        "appId": record["appId"],
        "deviceId": record["deviceId"],
        "command": {
            "serviceId": record["serviceId"],
            "method": record["method"],
            "paras": record["paras"],
        },
        "callbackUrl": record.get("callbackUrl"),
        "expireTime": record["expireTime"],
        "status": record["status"],
        "result": record.get("result"),
        "creationTime": to_huawei(record["creationTime"]),
        "executeTime": to_huawei(record.get("executeTime")),
        "platformIssuedTime": to_huawei(record.get("platformIssuedTime")),
        "deliveredTime": to_huawei(record.get("deliveredTime")),
        "issuedTimes": record.get("issuedTimes", 0),
        "maxRetransmit": record["maxRetransmit"],
    }
