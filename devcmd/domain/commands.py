"""Creating, reading, listing and cancelling single device commands."""

from __future__ import annotations

from collections.abc import Iterable

from devcmd import errors, faults
from devcmd.clock import now_ms
from devcmd.domain import callback_guard, ids
from devcmd.services import Services
from devcmd.store import keys
from devcmd.store.reads import Read

DEFAULT_EXPIRE_SECONDS = 172_800
STATUSES = keys.COMMAND_STATUSES
# Older OceanConnect pages call PENDING `DEFAULT`: accepted as a filter, never answered.
STATUS_ALIASES = {"DEFAULT": "PENDING"}


def create(
    svc: Services,
    app_id: str,
    device_id: str,
    command: dict,
    options: dict,
    extra: dict | None = None,
    command_id: str | None = None,
) -> dict:
    """Queue a command (PENDING); `extra` fields are kept with it (EnOS's pendingTtl, timeout).

    `command_id` fixes the id (an Idempotency-Key's): if that command exists already, it is
    returned as it is now and nothing is queued. Raises DeviceNotFound or PendingLimitReached.
    """
    if not ids.is_valid(device_id):
        raise errors.DeviceNotFound()
    if options.get("callbackUrl"):
        callback_guard.check_url(options["callbackUrl"], svc.config.callback_allow_private)
    now = now_ms()
    expire = options.get("expireTime")
    expire = DEFAULT_EXPIRE_SECONDS if expire is None else expire
    record = {
        "commandId": command_id or ids.new_id(),
        "appId": app_id,
        "deviceId": device_id,
        "serviceId": command["serviceId"],
        "method": command["method"],
        "paras": command.get("paras") or {},
        "callbackUrl": options.get("callbackUrl"),
        "expireTime": expire,
        "maxRetransmit": options.get("maxRetransmit") or 0,
        "creationTime": now,
    } | (extra or {})
    # expireTime 0 means "now or never": the command is offered for a moment, then expires.
    due = now + (expire * 1000 if expire else svc.config.expire_zero_grace_ms)
    created = svc.commands.create(record, due_ms=due, max_pending=svc.config.max_pending_per_device)
    svc.replicas.hold(keys.device(app_id, device_id))
    if not created:
        return get(svc, app_id, record["commandId"])
    record["status"] = "PENDING"
    return record


def get(svc: Services, app_id: str, command_id: str) -> dict:
    """One command of the application. Raises CommandNotFound."""
    device_id = svc.commands.device_of(app_id, command_id) if ids.is_valid(command_id) else None
    found = svc.commands.load(app_id, [(device_id, command_id)]) if device_id else []
    if not found:
        raise errors.CommandNotFound()
    return found[0]


def query(
    svc: Services,
    app_id: str,
    device_id: str | None,
    start: int,
    end: int,
    page_no: int,
    size: int,
    statuses: Iterable[str] | None = None,
    found: tuple[int, list[dict]] | None = None,
) -> tuple[int, list[dict]]:
    """A page of commands created in [start, end], newest first, and the exact total that
    match; `statuses` (names of STATUSES or their aliases) keeps those now in one of them.
    `found` is the answer of `query_read` with the same arguments if it was already made.

    Raises InvalidInput for an unknown status.
    """
    if found is not None:
        return found
    wanted = canonical_statuses(statuses) if statuses is not None else set(STATUSES)
    if device_id and not ids.is_valid(device_id):
        return 0, []
    offset = page_no * size
    if wanted == set(STATUSES):
        return svc.commands.page(app_id, device_id, start, end, offset, size)
    ordered = [s for s in STATUSES if s in wanted]
    return svc.commands.page_by_status(app_id, device_id, ordered, (start, end), offset, size)


def query_read(
    svc: Services,
    app_id: str,
    device_id: str | None,
    start: int,
    end: int,
    page_no: int,
    size: int,
    statuses: Iterable[str] | None = None,
) -> Read | None:
    """The store read `query` makes, to send ahead: one device's page in every status (one
    script run); None for the other queries (merged over devices or statuses)."""
    if not device_id or not ids.is_valid(device_id) or statuses is not None:
        return None
    return svc.commands.page_read(app_id, device_id, start, end, page_no * size, size)


def canonical_statuses(names: Iterable[str]) -> set[str]:
    """The statuses `names` mean (aliases resolved). Raises InvalidInput naming an unknown one."""
    wanted = {STATUS_ALIASES.get(name, name) for name in names}
    unknown = sorted(wanted - set(STATUSES))
    if unknown or not wanted:
        reason = f"unknown {unknown[0]!r}" if unknown else "no status given"
        raise errors.InvalidInput("status", f"{reason}; one or more of {', '.join(STATUSES)}")
    return wanted


def status(svc: Services, app_id: str, device_id: str, command_id: str) -> str | None:
    """The command's status alone (one cheap read, for waiting on an outcome)."""
    return svc.commands.status(app_id, device_id, command_id)


def cancel(svc: Services, app_id: str, command_id: str) -> dict:
    """Cancel one PENDING command. Raises CommandNotFound or CommandNotCancellable."""
    command = get(svc, app_id, command_id)
    if command.get("callbackUrl"):
        # Marked before the cancel, whose callback event it announces: if the store fails in
        # between, a dirty mark with nothing new is harmless; a cancel without it would leave
        # its callback unsent until the device's next event.
        svc.outbox.mark_dirty(app_id, command["deviceId"])
    svc.commands.cancel(app_id, command["deviceId"], command_id, now_ms())
    if command.get("callbackUrl"):
        with faults.redone_later(f"flush of {command['deviceId']}"):  # drain_dirty redoes it
            svc.broker.flush(app_id, command["deviceId"])
    svc.replicas.hold(keys.device(app_id, command["deviceId"]))
    return get(svc, app_id, command_id)
