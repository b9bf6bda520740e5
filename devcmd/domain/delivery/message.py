"""What a callback carries: the OceanConnect command-status body and its exact bytes."""

from __future__ import annotations

import json


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
    """The body as sent and signed: compact JSON. The standard library, not orjson: a device's
    `resultDetail` may hold integers beyond 64 bits, which orjson refuses."""
    return json.dumps(body(notification), separators=(",", ":"))
