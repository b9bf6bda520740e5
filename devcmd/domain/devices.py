"""Device registration, lookup and deletion (which revokes the device's undelivered commands)."""

from __future__ import annotations

import hashlib
import secrets

from devcmd import errors
from devcmd.clock import now_ms
from devcmd.domain import ids
from devcmd.services import Services

DEFAULT_REGISTRATION_TIMEOUT = 180


def register(
    svc: Services, app_id: str, node_id: str, verify_code: str | None, timeout: int | None
) -> dict:
    """Register a device; returns {deviceId, verifyCode, timeout, psk}. Raises NodeIdTaken."""
    device_id, psk, now = ids.new_id(), secrets.token_hex(16), now_ms()
    verify_code = verify_code or node_id
    timeout = DEFAULT_REGISTRATION_TIMEOUT if timeout is None else timeout
    record = {
        "deviceId": device_id,
        "appId": app_id,
        "nodeId": node_id,
        "verifyCode": verify_code,
        "timeout": timeout,
        "pskHash": hashlib.sha256(psk.encode()).hexdigest(),
        "createTime": now,
        "lastModifiedTime": now,
    }
    if not svc.devices.create(app_id, device_id, node_id, record):
        raise errors.NodeIdTaken()
    return {"deviceId": device_id, "verifyCode": verify_code, "timeout": timeout, "psk": psk}


def get(svc: Services, app_id: str, device_id: str) -> dict:
    """The device's record (never its psk). Raises DeviceNotFound."""
    device = svc.devices.get(app_id, device_id) if ids.is_valid(device_id) else None
    if not device:
        raise errors.DeviceNotFound()
    device["pendingCount"] = svc.devices.pending_count(app_id, device_id)
    return device


def delete(svc: Services, app_id: str, device_id: str) -> None:
    """Delete a device at once; its undelivered commands are cancelled by a background sweep.

    The same fence as a revocation task stops delivery in the same atomic step.
    Raises DeviceNotFound.
    """
    device = get(svc, app_id, device_id)
    task_id = ids.new_id()
    svc.revocations.open(app_id, device_id, task_id, now_ms(), cap=0, internal=True)
    svc.devices.unindex(app_id, device_id, device["nodeId"])
    svc.broker.sweep(app_id, device_id, task_id)
