"""Device registration body and the device answers."""

from marshmallow import fields, validate

from app.schemas import BaseSchema, HuaweiTime, StrictInteger, enos_name, identifier


class RegisterBody(BaseSchema):
    nodeId = identifier(required=True)
    verifyCode = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 64))
    timeout = StrictInteger(load_default=None, allow_none=True, validate=validate.Range(0, 2**31))
    # EnOS names of the device (docs/enos.md), each unique in the application.
    productKey = enos_name(load_default=None, allow_none=True)
    deviceKey = enos_name(load_default=None, allow_none=True)
    assetId = enos_name(load_default=None, allow_none=True)


class Registered(BaseSchema):
    deviceId = fields.String()
    verifyCode = fields.String()
    timeout = fields.Integer()
    psk = fields.String()
    productKey = fields.String()
    deviceKey = fields.String()
    assetId = fields.String()


class DeviceInfo(BaseSchema):
    nodeId = fields.String()
    status = fields.Constant("OFFLINE")
    productKey = fields.String()
    deviceKey = fields.String()
    assetId = fields.String()


class DeviceAnswer(BaseSchema):
    deviceId = fields.String()
    gatewayId = fields.Function(lambda d: d["deviceId"])
    nodeType = fields.Constant("GATEWAY")
    createTime = HuaweiTime()
    lastModifiedTime = HuaweiTime()
    pendingCommands = fields.Integer(attribute="pendingCount")
    deviceInfo = fields.Function(lambda d: DeviceInfo().dump(d))
