"""Command bodies, query parameters and the DeviceCommandResp answer."""

import json

from marshmallow import fields, validate

from app.schemas import BaseSchema, HuaweiTime, PageQuery, StrictInteger, identifier

MAX_EXPIRE = 2**31 - 1


class CommandDTO(BaseSchema):
    serviceId = identifier(required=True)
    method = fields.String(required=True, validate=validate.Length(1, 128))
    paras = fields.Dict(keys=fields.String(), load_default=dict, allow_none=True)


class CreateCommandBody(BaseSchema):
    deviceId = identifier(required=True)
    command = fields.Nested(CommandDTO, required=True)
    callbackUrl = fields.Url(
        load_default=None,
        allow_none=True,
        require_tld=False,
        schemes={"http", "https"},
        validate=validate.Length(max=1024),
    )
    expireTime = StrictInteger(
        load_default=None, allow_none=True, validate=validate.Range(0, MAX_EXPIRE)
    )
    maxRetransmit = StrictInteger(load_default=None, allow_none=True, validate=validate.Range(0, 3))


class CancelCommandBody(BaseSchema):
    status = fields.String(required=True, validate=validate.OneOf(["CANCELED"]))


class CommandsQuery(PageQuery):
    deviceId = identifier(load_default=None)


def _optional_json(raw):
    return json.loads(raw) if raw else None


class CommandAnswer(BaseSchema):
    """OceanConnect's DeviceCommandResp."""

    commandId = fields.String()
    appId = fields.String()
    deviceId = fields.String()
    command = fields.Function(
        lambda r: {
            "serviceId": r["serviceId"],
            "method": r["method"],
            "paras": json.loads(r.get("paras") or "{}"),
        }
    )
    callbackUrl = fields.Function(lambda r: r.get("callbackUrl") or None)
    expireTime = fields.Integer()
    status = fields.String()
    result = fields.Function(lambda r: _optional_json(r.get("result")))
    creationTime = HuaweiTime()
    executeTime = HuaweiTime()
    platformIssuedTime = HuaweiTime()
    deliveredTime = HuaweiTime()
    issuedTimes = fields.Integer()
    maxRetransmit = fields.Integer()
