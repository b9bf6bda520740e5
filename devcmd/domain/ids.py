"""Identifier generation and validation shared by all resources."""

from __future__ import annotations

import base64
import re
import secrets
import uuid

# Ids become parts of Redis keys and `appId/deviceId/taskId` members: no braces, colons, slashes.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def new_id() -> str:
    """An unguessable 32-hex-digit id (commands, devices, tasks)."""
    return uuid.uuid4().hex


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def is_valid(value: str) -> bool:
    return bool(ID_PATTERN.match(value))
