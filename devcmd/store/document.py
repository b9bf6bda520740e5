"""A command's fixed fields as stored in its device's `documents` hash (layout 3).

The stored form is a JSON array `[serviceId, method, paras, expireTime, maxRetransmit]`, plus
an object of any other fields (EnOS's pendingTtl, timeout) when there are some. commandId,
appId, deviceId, callbackUrl and creationTime are left out: the hash field, the key, the
device's callback hash and its command index (the score) hold them already. A short array
keeps a small command's document under 64 bytes, so a device's hash stays listpack-encoded
(hash-max-listpack-value) instead of costing a hashtable entry per command. Lua reads
maxRetransmit as element 5 (tick_device.lua).
"""

from __future__ import annotations

from typing import Any

import orjson

# Fields kept by position, in this order; the ids and callbackUrl are rebuilt by `decode`.
POSITIONAL = ("serviceId", "method", "paras", "expireTime", "maxRetransmit")
REBUILT = ("commandId", "appId", "deviceId", "callbackUrl", "creationTime")


def encode(record: dict[str, Any]) -> bytes:
    """The stored form of a new command's record (as built by domain.commands.create)."""
    values: list[Any] = [record[name] for name in POSITIONAL]
    extra = {k: v for k, v in record.items() if k not in POSITIONAL and k not in REBUILT}
    if extra:
        values.append(extra)
    return orjson.dumps(values)


def decode(
    raw: str | bytes,
    app_id: str,
    device_id: str,
    command_id: str,
    callback_url: str | None,
    created: float,
) -> dict[str, Any]:
    """The record `encode` stored, with the fields it left out, in the order the API answers
    them (the order create built it in)."""
    return _record(orjson.loads(raw), app_id, device_id, command_id, callback_url, int(created))


def records(app_id: str, device_id: str, rows: list) -> list[dict[str, Any]]:
    """The records, with their status and delivery fields, of commands of one device read by
    lua/read_commands.lua: `rows` is its answer after the total (ids, creation ms, statuses,
    callback URLs, and the lifecycle objects and stored forms as one JSON array each)."""
    command_ids, created, statuses, urls, lives, stored = rows
    found = []
    for command_id, ms, status, url, life, values in zip(
        command_ids, created, statuses, urls, orjson.loads(lives), orjson.loads(stored), strict=True
    ):
        record = _record(values, app_id, device_id, command_id, url, ms)
        record["status"] = status
        if life:
            record |= life
        found.append(record)
    return found


def _record(
    values: list, app_id: str, device_id: str, command_id: str, url: str | None, created: int
) -> dict[str, Any]:
    """A command's record from its decoded stored form (see POSITIONAL) and what it left out."""
    record = {
        "commandId": command_id,
        "appId": app_id,
        "deviceId": device_id,
        "serviceId": values[0],
        "method": values[1],
        "paras": values[2],
        "callbackUrl": url,
        "expireTime": values[3],
        "maxRetransmit": values[4],
        "creationTime": created,
    }
    if len(values) > len(POSITIONAL):
        record |= values[len(POSITIONAL)]
    return record


def is_legacy(raw: str | bytes) -> bool:
    """True for a layout-2 document (a JSON object with every field), which `migrate` rewrites."""
    return raw[:1] in ("{", b"{")


def from_legacy(raw: str | bytes) -> bytes:
    """The layout-3 form of a layout-2 document."""
    record = orjson.loads(raw)
    record.setdefault("paras", {})
    record.setdefault("maxRetransmit", 0)
    return encode(record)


def callback_url(stored: str | None, numbered: dict[str, str]) -> str | None:
    """A command's callback URL from its callback hash entry: a number in the device's table of
    distinct URLs `numbered` (keys.callback_urls), or the URL itself (commands of layout 2, or
    of a device past CALLBACK_URLS_PER_DEVICE distinct URLs)."""
    return numbered.get(stored) if stored and stored.isdigit() else stored
