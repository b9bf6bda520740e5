"""OceanConnect device registration, query and deletion."""

from __future__ import annotations

from flask import Blueprint

from app.apidoc import doc
from app.context import acting_for, app_id, authenticated, prefetched, services
from app.idempotency import idempotent, new_id
from app.schemas import json_body, schema
from app.schemas.devices import DeviceAnswer, RegisterBody, Registered, device_answer
from devcmd import errors
from devcmd.domain import devices

bp = Blueprint("devices", __name__, url_prefix="/iocm/app")


@bp.post("/reg/v1.1.0/deviceCredentials")
@authenticated
@doc(
    "Register a device: its deviceId and psk",
    body=RegisterBody,
    answers={200: Registered},
    raises=(errors.NodeIdTaken, errors.IdentityTaken),
)
@idempotent()
def register():
    body = json_body(RegisterBody)
    device = devices.register(
        services(),
        app_id(),
        body.pop("nodeId"),
        body.pop("verifyCode"),
        body.pop("timeout"),
        device_id=new_id(),
        **body,
    )
    return schema(Registered).dump(device)


@bp.get("/dm/v1.4.0/devices/<device_id>")
@acting_for("appId", reading=devices.get_read)
@doc("Query a device", answers={200: DeviceAnswer}, raises=(errors.DeviceNotFound,))
def get(device_id: str):
    return device_answer(devices.get(services(), app_id(), device_id, prefetched()))


@bp.delete("/dm/v1.4.0/devices/<device_id>")
@authenticated
@doc(
    "Delete a device; its undelivered commands end CANCELED",
    answers={204: None},
    raises=(errors.DeviceNotFound, errors.Congested),
)
def delete(device_id: str):
    devices.delete(services(), app_id(), device_id)
    return "", 204
