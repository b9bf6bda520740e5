"""Device registration body and the device answers."""

from marshmallow import fields, validate

from app.schemas import BaseSchema, HuaweiTime, StrictInteger, enos_name, identifier
from devcmd.clock import to_huawei

ENOS_NAMES = ("productKey", "deviceKey", "assetId")


class RegisterBody(BaseSchema):
    class Meta(BaseSchema.Meta):
        together = (("productKey", "deviceKey"),)  # documented by app/spec.py

    nodeId = identifier(required=True)
    verifyCode = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 64))
    timeout = StrictInteger(load_default=None, allow_none=True, validate=validate.Range(0, 2**31))
    # EnOS names of the device (docs/enos.md), each unique in the application.
    productKey = enos_name(load_default=None, allow_none=True)
    deviceKey = enos_name(load_default=None, allow_none=True)
    assetId = enos_name(load_default=None, allow_none=True)


class Registered(BaseSchema):
    deviceId = fields.String(required=True)
    verifyCode = fields.String(required=True)
    timeout = fields.Integer(required=True)
    psk = fields.String(required=True)
    productKey = fields.String()
    deviceKey = fields.String()
    assetId = fields.String()


class Whole(fields.Nested):
    """A nested object made from the same record (OceanConnect nests `deviceInfo`)."""

    def serialize(self, attr, obj, accessor=None, **kwargs):
        return self._serialize(obj, attr, obj, **kwargs)


class DeviceInfo(BaseSchema):
    nodeId = fields.String(required=True)
    status = fields.Constant("OFFLINE", required=True)
    productKey = fields.String()
    deviceKey = fields.String()
    assetId = fields.String()


class DeviceAnswer(BaseSchema):
    deviceId = fields.String(required=True)
    gatewayId = fields.String(attribute="deviceId", dump_only=True, required=True)
    nodeType = fields.Constant("GATEWAY", required=True)
    createTime = HuaweiTime(required=True)
    lastModifiedTime = HuaweiTime(required=True)
    pendingCommands = fields.Integer(attribute="pendingCount", required=True)
    deviceInfo = Whole(DeviceInfo, required=True)


def device_answer(device: dict) -> dict:
    """OceanConnect's device answer, as `DeviceAnswer` documents it.

    A plain function rather than a marshmallow dump, as `command_answer`: a dump of this small
    answer cost about a tenth of the whole call (bench.profile).
    """
    info = {"nodeId": device["nodeId"], "status": "OFFLINE"}
    info.update({name: device[name] for name in ENOS_NAMES if name in device})
    return {
        "deviceId": device["deviceId"],
        "gatewayId": device["deviceId"],
        "nodeType": "GATEWAY",
        "createTime": to_huawei(device["createTime"]),
        "lastModifiedTime": to_huawei(device["lastModifiedTime"]),
        "pendingCommands": device["pendingCount"],
        "deviceInfo": info,
    }
