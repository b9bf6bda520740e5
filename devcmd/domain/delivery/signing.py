"""Standard Webhooks signing: one signer per live secret of an application."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from devcmd.domain import auth
from devcmd.services import Services


def signers(svc: Services, app_ids: set[str]) -> dict[str, list[Webhook]]:
    """Signers per application: its current secret, and one in grace after a rotation."""
    apps = {app_id: svc.apps.signing_record(app_id) for app_id in app_ids}
    return {
        app_id: [Webhook(secret) for secret in auth.webhook_secrets(app)]
        for app_id, app in apps.items()
        if app
    }


def headers(signers_: list[Webhook], notification: dict, payload: str) -> dict[str, str]:
    """Standard Webhooks headers; `webhook-id` is the same on every retry of a notification."""
    seconds = int(time.time())
    found = {
        "Content-Type": "application/json",
        "webhook-id": notification["id"],
        "webhook-timestamp": str(seconds),
    }
    if signers_:
        at = datetime.fromtimestamp(seconds, UTC)
        signatures = (signer.sign(notification["id"], at, payload) for signer in signers_)
        found["webhook-signature"] = " ".join(signatures)
    return found
