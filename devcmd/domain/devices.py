"""Device registration, lookup and deletion (which revokes the device's undelivered commands)."""

from __future__ import annotations

import hashlib
import secrets

from devcmd import errors, faults
from devcmd.clock import now_ms
from devcmd.domain import ids, revocations
from devcmd.services import Services
from devcmd.store.reads import Read

DEFAULT_REGISTRATION_TIMEOUT = 180
ENOS_NAMES = ("assetId", "productKey", "deviceKey")


def register(
    svc: Services,
    app_id: str,
    node_id: str,
    verify_code: str | None,
    timeout: int | None,
    *,
    device_id: str | None = None,
    **enos: str | None,
) -> dict:
    """Register a device; returns {deviceId, verifyCode, timeout, psk} and its EnOS names.

    `enos` may carry `assetId`, `productKey` and `deviceKey` (the last two together), each
    unique in the application. `device_id` fixes the id (an Idempotency-Key's): registering it
    again keeps its names and gives it a new psk. Raises NodeIdTaken, IdentityTaken or
    InvalidInput.
    """
    names = _enos_names(svc, app_id, enos)
    device_id, psk, now = device_id or ids.new_id(), secrets.token_hex(16), now_ms()
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
    } | names
    svc.retention.register(app_id, device_id, now)  # before the device: see RetentionStore
    try:
        svc.devices.create(app_id, device_id, record)
    except (errors.NodeIdTaken, errors.IdentityTaken):
        # A refused registration leaves no entry behind (ids a caller makes up must not pile up).
        svc.retention.forget_unknown(app_id, device_id)
        raise
    answer = {"deviceId": device_id, "verifyCode": verify_code, "timeout": timeout, "psk": psk}
    return answer | names


def _enos_names(svc: Services, app_id: str, enos: dict) -> dict[str, str]:
    """The EnOS names given at registration, checked for shape and for clashes with deviceIds."""
    names = {k: v for k, v in enos.items() if k in ENOS_NAMES and v}
    if bool(names.get("productKey")) != bool(names.get("deviceKey")):
        raise errors.InvalidInput("productKey", "productKey and deviceKey must be given together")
    # A device without an assetId is named in EnOS by its deviceId: keep the two apart.
    asset_id = names.get("assetId")
    if asset_id and ids.is_valid(asset_id) and svc.devices.get(app_id, asset_id):
        raise errors.IdentityTaken("assetId")
    return names


def find(
    svc: Services,
    app_id: str,
    asset_id: str | None,
    product_key: str | None,
    device_key: str | None,
) -> dict:
    """The live device EnOS names by `assetId` or by `productKey` + `deviceKey`.

    When both come they must name the same device. A device registered without an assetId
    answers to its deviceId. Raises InvalidInput or DeviceNotFound.
    """
    if bool(product_key) != bool(device_key):
        raise errors.InvalidInput("productKey", "productKey and deviceKey must be given together")
    if not asset_id and not product_key:
        raise errors.InvalidInput("assetId", "give assetId or productKey + deviceKey")
    by_asset = _by_asset(svc, app_id, asset_id) if asset_id else None
    by_key = svc.devices.by_device_key(app_id, product_key, device_key) if product_key else None
    if asset_id and product_key and by_asset != by_key:
        raise errors.InvalidInput(
            "assetId", "assetId and productKey + deviceKey name different devices"
        )
    device_id = by_asset or by_key
    device = svc.devices.get(app_id, device_id) if device_id else None
    if not device:
        raise errors.DeviceNotFound()
    return device


def _by_asset(svc: Services, app_id: str, asset_id: str) -> str | None:
    device_id = svc.devices.by_asset(app_id, asset_id)
    if device_id is None and ids.is_valid(asset_id):
        device = svc.devices.get(app_id, asset_id)
        device_id = asset_id if device and not device.get("assetId") else None
    return device_id


def get_read(svc: Services, app_id: str, device_id: str) -> Read | None:
    """The store read `get` makes, to send ahead (None: the id is malformed, nothing to read)."""
    return svc.devices.read_with_pending(app_id, device_id) if ids.is_valid(device_id) else None


def get(svc: Services, app_id: str, device_id: str, found: tuple | None = None) -> dict:
    """The device's record (never its psk), with its pending count; `found` is the answer of
    `get_read` if it was already made. Raises DeviceNotFound."""
    if not ids.is_valid(device_id):
        raise errors.DeviceNotFound()
    device, pending = (
        found if found is not None else svc.devices.get_with_pending(app_id, device_id)
    )
    if not device:
        raise errors.DeviceNotFound()
    device["pendingCount"] = pending
    return device


def delete(svc: Services, app_id: str, device_id: str) -> None:
    """Delete a device at once; its undelivered commands are cancelled by a background sweep.

    The same fence as a revocation task stops delivery in the same atomic step.
    Raises DeviceNotFound, or Congested (nothing written) as a revocation task would.
    """
    device = get(svc, app_id, device_id)
    revocations.admit(svc)
    task_id = ids.new_id()
    svc.revocations.open(app_id, device_id, task_id, now_ms(), cap=0, internal=True)
    svc.devices.unindex(app_id, device_id, device)
    with faults.redone_later(f"sweep of deleted device {device_id}"):  # resume_stalled redoes it
        svc.broker.sweep(app_id, device_id, task_id)
