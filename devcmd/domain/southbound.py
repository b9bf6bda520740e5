"""What devices do: authenticate, take their next commands, acknowledge them, report results;
and the timers that expire undelivered commands and retransmit unacknowledged ones."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable

from devcmd import errors, faults
from devcmd.clock import now_ms
from devcmd.domain import ids
from devcmd.services import Services
from devcmd.store import keys

RESULT_CODES = ("SUCCESSFUL", "FAILED")


def authenticate(svc: Services, device_id: str, username: str | None, psk: str | None) -> str:
    """The application owning the device, if `username:psk` are its credentials.

    Raises DeviceAuthFailed (also for a device id in the path that is not the caller's own).
    """
    digest = _digest(device_id, username, psk)
    app_id = svc.devices.owner(device_id)
    device = svc.devices.get(app_id, device_id) if app_id else None
    if not device or not hmac.compare_digest(device["pskHash"], digest):
        raise errors.DeviceAuthFailed()
    svc.devices.accept_psk(device_id, digest)
    return app_id


def _digest(device_id: str, username: str | None, psk: str | None) -> str:
    """The digest of the presented psk, if the credentials are well-formed and name the device
    of the path. Raises DeviceAuthFailed."""
    if not username or not psk or username != device_id or not ids.is_valid(device_id):
        raise errors.DeviceAuthFailed()
    return hashlib.sha256(psk.encode()).hexdigest()


def authenticated_fetch(
    svc: Services, device_id: str, username: str | None, psk: str | None, limit: int
) -> list[dict]:
    """`authenticate`, then `fetch`. A device that this process has seen authenticate with the
    same psk (its owner known) skips the separate check: the fetch script checks the psk
    against the live record in the same atomic step, so a changed psk or a deleted device is
    refused at once, with nothing changed. One round trip instead of two for a device polling
    an empty queue. Raises DeviceAuthFailed."""
    digest = _digest(device_id, username, psk)
    accepted = svc.devices.accepted_psk(device_id)
    seen = accepted is not None and hmac.compare_digest(accepted, digest)
    app_id = svc.devices.owner(device_id) if seen else None
    if app_id:
        try:
            return fetch(svc, app_id, device_id, limit, digest)
        except errors.DeviceAuthFailed:
            svc.devices.accept_psk(device_id, None)
            raise
    return fetch(svc, authenticate(svc, device_id, username, psk), device_id, limit)


def fetch(
    svc: Services, app_id: str, device_id: str, limit: int, psk_digest: str | None = None
) -> list[dict]:
    """The device's next commands in queue order, each now SENT; with `psk_digest`, only if it
    is the live device's (DeviceAuthFailed, nothing changed, if not)."""
    ack_ms = int(svc.config.ack_timeout * 1000)
    notified, sent = svc.southbound.fetch(app_id, device_id, now_ms(), limit, ack_ms, psk_digest)
    if notified:
        _notify(svc, app_id, device_id)
    if sent:  # not handed to the device unless SENT survives a failover; if not, a 503, and
        # the commands go out again at their ack timeout (maxRetransmit) or end TIMEOUT
        svc.replicas.hold(keys.device(app_id, device_id))
    records = svc.commands.load(app_id, ((device_id, command_id) for command_id in sent))
    return [{k: r[k] for k in ("commandId", "serviceId", "method", "paras")} for r in records]


def ack(svc: Services, app_id: str, device_id: str, command_id: str) -> None:
    """SENT -> DELIVERED. Raises CommandNotFound or IllegalTransition."""
    if svc.southbound.ack(app_id, device_id, command_id, now_ms()):
        _notify(svc, app_id, device_id)
    svc.replicas.hold(keys.device(app_id, device_id))


def finish(svc: Services, app_id: str, device_id: str, command_id: str, code: str, detail) -> None:
    """End a command SUCCESSFUL or FAILED. Raises CommandNotFound or IllegalTransition."""
    svc.outbox.mark_dirty(app_id, device_id)  # before the event it announces (see _notify)
    svc.southbound.finish(
        app_id, device_id, command_id, now_ms(), code, json.dumps(detail, separators=(",", ":"))
    )
    _flush(svc, app_id, device_id)
    svc.replicas.hold(keys.device(app_id, device_id))


def tick(svc: Services, buckets: Iterable[int] | None = None) -> int:
    """Run the due device timers of the given index buckets (default: all), at most
    TIMER_BATCH devices per bucket; returns how many devices were looked at."""
    now, looked = now_ms(), 0
    for bucket in svc.buckets if buckets is None else buckets:
        due = svc.southbound.timers.due(bucket, now, svc.config.timer_batch)
        for app_id, device_id in due:
            result = svc.southbound.tick(app_id, device_id, now, svc.config.timer_batch)
            if result.expired or result.timed_out:
                _notify(svc, app_id, device_id)
        looked += len(due)
    return looked


def _notify(svc: Services, app_id: str, device_id: str) -> None:
    """Announce events already in the device's outbox. Where the caller knows beforehand that
    a transition makes one, it marks the outbox dirty before it, so a store failure after the
    transition cannot leave an event that beat's drain never finds."""
    svc.outbox.mark_dirty(app_id, device_id)
    _flush(svc, app_id, device_id)


def _flush(svc: Services, app_id: str, device_id: str) -> None:
    with faults.redone_later(f"flush of {device_id}"):  # the outbox is marked dirty
        svc.broker.flush(app_id, device_id)
