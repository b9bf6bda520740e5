"""The EnOS connect-service dialect on the same core: device names, command states, cancel,
get, search and invokeService, all through the functions OceanConnect clients reach too.

An EnOS `orgId` is an application; a device is named by `assetId` or `productKey` + `deviceKey`
(see `devices.find`). Nothing here keeps state of its own.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from devcmd import errors
from devcmd.domain import commands, devices, revocations
from devcmd.services import Services

MEASUREPOINT_SETTING, SERVICE_INVOCATION = 1, 2
# EnOS command states (1-7) from our statuses.
STATES = {
    "PENDING": 1, "CANCELED": 2, "EXPIRED": 3, "SENT": 4, "DELIVERED": 4, "SUCCESSFUL": 5,
    "FAILED": 6, "TIMEOUT": 7,
}  # fmt: skip
TERMINAL = frozenset({"CANCELED", "EXPIRED", "SUCCESSFUL", "FAILED", "TIMEOUT"})
SCAN_CHUNK = 2000
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Filters:
    """A search expression: every condition must hold. `states` None means any state."""

    states: frozenset[int] | None = None
    names: tuple[str, ...] = ()  # LIKE patterns on the command name
    start: int = 0
    end: int = 2**53


def tsl_identifier(record: dict) -> str:
    """The EnOS identifier of a command: its `method` (an EnOS service id is stored as both
    serviceId and method)."""
    return record["method"]


def output_data(record: dict):
    """What the device answered (its resultDetail), or None before a result."""
    result = record.get("result")
    return result.get("resultDetail") if result else None


def find_device(svc: Services, app_id: str, names: dict) -> dict:
    """The device named by `assetId` or `productKey` + `deviceKey`. Raises InvalidInput or
    DeviceNotFound."""
    return devices.find(
        svc, app_id, names.get("assetId"), names.get("productKey"), names.get("deviceKey")
    )


def get_command(svc: Services, app_id: str, device_id: str, command_id: str) -> dict:
    """One command of the named device. Raises CommandNotFound (also for another device's)."""
    command = commands.get(svc, app_id, command_id)
    if command["deviceId"] != device_id:
        raise errors.CommandNotFound()
    return command


def cancel(svc: Services, app_id: str, device_id: str, command_id: str | None) -> list[dict]:
    """Cancel one cached command, or with no id every cached command of the device, now.

    Returns the commands cancelled. Raises CommandNotFound, CommandNotCancellable or
    ScopeTooLarge (more than ENOS_CANCEL_LIMIT cached: nothing changed).
    """
    if command_id is None:
        return revocations.revoke_now(svc, app_id, device_id, svc.config.enos_cancel_limit)
    get_command(svc, app_id, device_id, command_id)
    return [commands.cancel(svc, app_id, command_id)]


def search(
    svc: Services, app_id: str, device_id: str, filters: Filters, page_no: int, size: int
) -> tuple[int, list[dict]]:
    """The device's commands matching `filters`, newest first: (total, page `page_no` >= 1).

    The createTime window is read from the index by rank; a state condition alone reads the
    per-status indexes, as OceanConnect's status filter does (the same few round trips however
    many commands the window holds); a name condition scans the window in chunks.
    """
    offset = (page_no - 1) * size
    if filters.states is not None and not filters.names:
        return _in_states(svc, app_id, device_id, filters, offset, size)
    first, count = svc.commands.window(app_id, device_id, filters.start, filters.end)
    end = first + count
    if filters.states is None and not filters.names:
        ids = []
        if offset < count:
            last = min(end, first + offset + size) - 1
            ids = svc.commands.ids_by_rank(app_id, device_id, first + offset, last)
        return count, _load(svc, app_id, device_id, ids)
    total, page = 0, []
    for lo in range(first, end, SCAN_CHUNK):
        chunk = svc.commands.ids_by_rank(app_id, device_id, lo, min(lo + SCAN_CHUNK, end) - 1)
        matched = _matching(svc, app_id, device_id, chunk, filters)
        page += matched[max(0, offset - total) : max(0, offset + size - total)]
        total += len(matched)
    return total, _load(svc, app_id, device_id, page)


def _in_states(
    svc: Services, app_id: str, device_id: str, filters: Filters, offset: int, size: int
) -> tuple[int, list[dict]]:
    """The page of commands now in one of `filters.states`, from the per-status indexes."""
    statuses = [s for s in commands.STATUSES if STATES[s] in (filters.states or ())]
    if not statuses:  # `state = 1 AND state = 2`
        return 0, []
    window = (filters.start, filters.end)
    return svc.commands.page_by_status(app_id, device_id, statuses, window, offset, size)


def _load(svc: Services, app_id: str, device_id: str, ids: list[str]) -> list[dict]:
    return svc.commands.load(app_id, ((device_id, command_id) for command_id in ids))


def _matching(svc: Services, app_id: str, device_id: str, ids: list[str], filters: Filters):
    if filters.states is not None:
        statuses = svc.commands.statuses(app_id, device_id, ids)
        ids = [i for i, s in zip(ids, statuses, strict=True) if STATES.get(s) in filters.states]
    if filters.names and ids:
        patterns = [like(p) for p in filters.names]
        records = _load(svc, app_id, device_id, ids)
        ids = [
            r["commandId"] for r in records if all(p.search(tsl_identifier(r)) for p in patterns)
        ]
    return ids


def like(pattern: str) -> re.Pattern:
    """A case-insensitive matcher for an EnOS fuzzy match: SQL LIKE (`%` any run, `_` any one
    character) over the whole name; a pattern without `%` matches anywhere (`%pattern%`)."""
    if "%" not in pattern:
        pattern = f"%{pattern}%"
    parts = ("." if c == "_" else ".*" if c == "%" else re.escape(c) for c in pattern)
    return re.compile("^" + "".join(parts) + "$", re.IGNORECASE | re.DOTALL)


def invoke_service(
    svc: Services,
    app_id: str,
    device_id: str,
    service_id: str,
    input_data: dict,
    options: dict,
    command_id: str | None = None,
) -> dict:
    """Queue a service invocation; `options` has pendingTtl, timeout and callbackUrl.

    A cached command (pendingTtl > 0) waits up to pendingTtl seconds for the device and the
    answer is its id. An instant one (pendingTtl 0) must be taken within `timeout` seconds; the
    call waits for its result up to min(timeout, ENOS_INVOKE_WAIT) and answers outputData and
    state. `command_id` fixes the command's id (an Idempotency-Key's). Raises DeviceNotFound,
    PendingLimitReached or InvalidInput (callbackUrl).
    """
    ttl, timeout = options["pendingTtl"], options["timeout"]
    command = {"serviceId": service_id, "method": service_id, "paras": input_data}
    core = {"expireTime": ttl or timeout, "callbackUrl": options.get("callbackUrl")}
    extra = {"pendingTtl": ttl, "timeout": timeout, "commandType": SERVICE_INVOCATION}
    record = commands.create(svc, app_id, device_id, command, core, extra, command_id)
    if ttl:
        return {"commandId": record["commandId"]}
    wait = min(timeout, svc.config.enos_invoke_wait)
    final = _wait(svc, app_id, device_id, record["commandId"], wait)
    return {
        "commandId": final["commandId"],
        "outputData": output_data(final),
        "state": STATES[final["status"]],
    }


def _wait(svc: Services, app_id: str, device_id: str, command_id: str, seconds: float) -> dict:
    """The command once it ends, or as it is after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if commands.status(svc, app_id, device_id, command_id) in TERMINAL:
            break
        time.sleep(POLL_SECONDS)
    return commands.get(svc, app_id, command_id)
