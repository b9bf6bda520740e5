"""What a callback carries: the OceanConnect command-status body and its exact bytes."""

from __future__ import annotations

import json

import orjson


def body(notification: dict) -> dict:
    """The OceanConnect command-status callback body."""
    return {
        "deviceId": notification["deviceId"],
        "commandId": notification["commandId"],
        "result": {
            "resultCode": notification["status"],
            "resultDetail": notification.get("detail"),
        },
    }


def payload(notification: dict) -> str:
    """The body as sent and signed: compact JSON, by orjson; the standard library (same compact
    form) only for a body orjson refuses: a device's `resultDetail` may hold integers beyond 64
    bits."""
    content = body(notification)
    try:
        return orjson.dumps(content).decode()
    except TypeError:
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False)
