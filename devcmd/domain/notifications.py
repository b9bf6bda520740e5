"""Callback notifications: drain a device's outbox into delivery batches, and deliver them.

Delivery is at-least-once: an event leaves the outbox only after its delivery task is enqueued,
and a delivery task re-enqueues what failed with exponential backoff. Receivers deduplicate on
the `webhook-id` header, which is stable across retries.
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from datetime import UTC, datetime

import requests
from standardwebhooks.webhooks import Webhook

from devcmd.services import Services

log = logging.getLogger(__name__)

EVENTS_PER_DRAIN = 20
NOTIFICATIONS_PER_TASK = 500
LOCK_MS = 30_000
FINISHED = ("SUCCESSFUL", "FAILED")


def flush(svc: Services, app_id: str, device_id: str) -> bool:
    """Hand the device's outbox to delivery tasks, one per receiver URL and chunk.

    Commands without a callbackUrl are skipped here. Returns False if another process holds
    the device's drain lock (the caller retries later).
    """
    token = svc.outbox.lock(app_id, device_id, LOCK_MS)
    if token is None:
        return False
    try:
        while events := svc.outbox.peek(app_id, device_id, EVENTS_PER_DRAIN):
            by_url: dict[str, list[dict]] = defaultdict(list)
            for event in events:
                urls = svc.outbox.callback_urls(app_id, device_id, event.command_ids)
                details = _details(svc, app_id, device_id, event)
                for command_id, url, detail in zip(event.command_ids, urls, details, strict=True):
                    if url:
                        notification = _notification(app_id, device_id, event, command_id, url)
                        by_url[url].append(notification | {"detail": detail})
            for pending in by_url.values():
                for start in range(0, len(pending), NOTIFICATIONS_PER_TASK):
                    svc.broker.deliver(pending[start : start + NOTIFICATIONS_PER_TASK], attempt=1)
            svc.outbox.drop(app_id, device_id, len(events))
    finally:
        svc.outbox.unlock(app_id, device_id, token)
    return True


def _details(svc: Services, app_id: str, device_id: str, event) -> list:
    """The device's resultDetail for SUCCESSFUL/FAILED events; None for other changes."""
    if event.status in FINISHED:
        return svc.outbox.result_details(app_id, device_id, event.command_ids)
    return [None] * len(event.command_ids)


def _notification(app_id: str, device_id: str, event, command_id: str, url: str) -> dict:
    return {
        "id": f"msg_{command_id}_{event.status}",
        "appId": app_id,
        "deviceId": device_id,
        "commandId": command_id,
        "status": event.status,
        "at": event.at_ms,
        "url": url,
    }


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


def deliver(svc: Services, session: requests.Session, batch: list[dict]) -> list[dict]:
    """POST each notification; returns those that must be retried.

    After a connection error or timeout the rest of the batch for that URL is not tried now,
    so one dead receiver costs one timeout per batch, not one per notification.
    """
    failed: list[dict] = []
    dead: set[str] = set()
    timeout = svc.config.callback_timeout
    signers = _signers(svc, {n["appId"] for n in batch})
    for notification in batch:
        url = notification["url"]
        if url in dead:
            failed.append(notification)
            continue
        payload = json.dumps(body(notification), separators=(",", ":"))
        try:
            response = session.post(
                url,
                data=payload,
                headers=_headers(signers.get(notification["appId"]), notification, payload),
                timeout=(min(timeout, 3.0), timeout),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            log.warning("callback to %s failed: %s", url, exc)
            dead.add(url)
            failed.append(notification)
            continue
        if response.status_code == 410:
            continue
        if not 200 <= response.status_code < 300:
            failed.append(notification)
    return failed


def _signers(svc: Services, app_ids: set[str]) -> dict[str, Webhook]:
    """One Standard Webhooks signer per application, from its current webhookSecret."""
    apps = {app_id: svc.apps.get(app_id) for app_id in app_ids}
    return {app_id: Webhook(app["webhookSecret"]) for app_id, app in apps.items() if app}


def _headers(signer: Webhook | None, notification: dict, payload: str) -> dict[str, str]:
    """Standard Webhooks headers; `webhook-id` is the same on every retry of a notification."""
    now = datetime.now(UTC)
    headers = {
        "Content-Type": "application/json",
        "webhook-id": notification["id"],
        "webhook-timestamp": str(int(now.timestamp())),
    }
    if signer is not None:
        headers["webhook-signature"] = signer.sign(notification["id"], now, payload)
    return headers


def backoff(svc: Services, attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: exponential with full jitter."""
    ceiling = svc.config.callback_backoff_base * (2 ** (attempt - 1))
    return min(ceiling, 3000.0) * (0.5 + random.random() / 2)


def drain_dirty(svc: Services) -> int:
    """Enqueue a flush for every device whose outbox may hold events (beat's safety net)."""
    dirty = svc.outbox.dirty()
    for app_id, device_id in dirty:
        svc.broker.flush(app_id, device_id)
    return len(dirty)
