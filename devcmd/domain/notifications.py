"""Callback notifications: drain a device's outbox into delivery batches, and deliver them.

Delivery (`devcmd.domain.delivery`) is at-least-once: an event leaves the outbox only after its
records exist and its delivery task is enqueued; every record handed to a delivery task is
leased on a Redis due-time set (CALLBACK_LEASE_SECONDS) until that task settles it, so a task
lost with its worker is sent again when the lease ends; failed attempts are retried on the
schedule in CALLBACK_RETRY_SCHEDULE through the same set. Receivers deduplicate on
`webhook-id`, which is stable across retries.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

from devcmd.clock import now_ms
from devcmd.domain import commands
from devcmd.services import Services

log = logging.getLogger(__name__)

EVENTS_PER_DRAIN = 20
RECORDS_PER_DRAIN = 2000  # a round stops taking events once it holds this many notifications
NOTIFICATIONS_PER_TASK = 500
# The drain lock lives this long and each round renews it: a drainer killed while holding it
# (a worker crash mid-flush) blocks the device's callbacks for at most this long. A round of
# RECORDS_PER_DRAIN takes tens of milliseconds; one that stalls past the lock drops nothing.
LOCK_MS = 10_000
FINISHED = ("SUCCESSFUL", "FAILED")
STATUS_ORDER = {
    "SENT": 0, "DELIVERED": 1, "SUCCESSFUL": 2, "FAILED": 2, "TIMEOUT": 2, "EXPIRED": 0,
    "CANCELED": 0,
}  # fmt: skip
RETRY_CLAIM = 2000


def flush(svc: Services, app_id: str, device_id: str) -> bool:
    """Hand the device's outbox to delivery tasks, one per chunk of up to NOTIFICATIONS_PER_TASK
    notifications (whatever their receiver URLs).

    Commands without a callbackUrl are skipped here. Returns False if another process holds
    the device's drain lock (the caller retries later).
    """
    token = svc.outbox.lock(app_id, device_id, LOCK_MS)
    if token is None:
        return False
    try:
        drained = False
        while events := svc.outbox.peek(app_id, device_id, EVENTS_PER_DRAIN):
            records, taken = [], 0
            for event in events:
                if len(records) >= RECORDS_PER_DRAIN:
                    break
                taken += 1
                urls = svc.outbox.callback_urls(app_id, device_id, event.command_ids)
                details = _details(svc, app_id, device_id, event)
                for command_id, url, detail in zip(event.command_ids, urls, details, strict=True):
                    if url:
                        records.append(_record(app_id, device_id, event, command_id, url, detail))
            fresh = svc.notifications.create(records, lease_until(svc))
            refs = [[app_id, device_id, r["id"]] for r in fresh]
            for start in range(0, len(refs), NOTIFICATIONS_PER_TASK):
                svc.broker.deliver(refs[start : start + NOTIFICATIONS_PER_TASK])
            # clears the dirty mark at 0 left; -1: the lock expired under a stalled round, and
            # whoever holds it now drains these events again (records are created NX)
            if svc.outbox.drop(app_id, device_id, taken, token, LOCK_MS) < 0:
                return True
            drained = True
        if not drained:  # marked dirty, nothing to drain: clear the mark
            svc.outbox.drop(app_id, device_id, 0, token, LOCK_MS)
    finally:
        svc.outbox.unlock(app_id, device_id, token)
    return True


def _details(svc: Services, app_id: str, device_id: str, event) -> list:
    """The device's resultDetail for SUCCESSFUL/FAILED events; None for other changes."""
    if event.status in FINISHED:
        return svc.outbox.result_details(app_id, device_id, event.command_ids)
    return [None] * len(event.command_ids)


def _record(app_id: str, device_id: str, event, command_id: str, url: str, detail) -> dict:
    return {
        "id": f"msg_{command_id}_{event.status}",
        "appId": app_id,
        "deviceId": device_id,
        "commandId": command_id,
        "status": event.status,
        "at": event.at_ms,
        "url": url,
        "detail": detail,
        "state": "pending",
        "attempts": [],
        "attemptCount": 0,
        "nextAttempt": event.at_ms,
    }


def lease_until(svc: Services) -> int:
    """When a notification handed to a delivery task now falls due again if nobody settles it
    (its delivery task died with a worker, or was never enqueued)."""
    return now_ms() + int(svc.config.callback_lease_seconds * 1000)


def retry_due(svc: Services, buckets: Iterable[int] | None = None) -> int:
    """Hand notifications whose retry (or lease) is due to delivery tasks, at most RETRY_CLAIM
    per index bucket (default: every bucket); returns how many."""
    claimed = [
        ref
        for bucket in (svc.buckets if buckets is None else buckets)
        for ref in svc.notifications.claim_due(bucket, now_ms(), RETRY_CLAIM, lease_until(svc))
    ]
    by_device: dict[tuple[str, str], list[list[str]]] = defaultdict(list)
    for app_id, device_id, notification_id in claimed:
        by_device[app_id, device_id].append([app_id, device_id, notification_id])
    for refs in by_device.values():
        for start in range(0, len(refs), NOTIFICATIONS_PER_TASK):
            svc.broker.deliver(refs[start : start + NOTIFICATIONS_PER_TASK])
    return len(claimed)


def retry_failed(svc: Services, since_ms: int = 0, limit: int = 100_000) -> int:
    """Give notifications that failed (since `since_ms`) a fresh set of attempts, now.

    Their history is kept; returns how many were re-queued.
    """
    refs = svc.notifications.failed_since(since_ms, limit)
    by_device: dict[tuple[str, str], list[str]] = defaultdict(list)
    for app_id, device_id, notification_id in refs:
        by_device[app_id, device_id].append(notification_id)
    now, revived = now_ms(), []
    for (app_id, device_id), ids in by_device.items():
        for record in svc.notifications.load(app_id, device_id, ids):
            if record and record["state"] == "failed":
                record.update(state="pending", attemptCount=0, nextAttempt=now)
                revived.append(record)
    svc.notifications.save(revived)
    svc.notifications.schedule(revived, {r["id"]: now for r in revived})
    svc.notifications.unmark_failed(refs)
    return len(revived)


def history(svc: Services, app_id: str, command_id: str) -> list[dict]:
    """Every notification of one command with its attempts, in status order."""
    command = commands.get(svc, app_id, command_id)
    ids = [f"msg_{command_id}_{status}" for status in STATUS_ORDER]
    return [r for r in svc.notifications.load(app_id, command["deviceId"], ids) if r]


def drain_dirty(svc: Services, buckets: Iterable[int] | None = None) -> int:
    """Enqueue a flush for every device whose outbox may hold events (beat's safety net), at
    most 1000 per index bucket (default: every bucket)."""
    dirty = [
        pair
        for bucket in (svc.buckets if buckets is None else buckets)
        for pair in svc.outbox.dirty(bucket)
    ]
    for app_id, device_id in dirty:
        svc.broker.flush(app_id, device_id)
    return len(dirty)
