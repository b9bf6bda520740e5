"""Sending notifications: concurrent (asyncio, `transport`), signed (Standard Webhooks,
`signing`), in status order per command (`ordering`), retried on a schedule (`retry`), with a
circuit breaker per receiver (`devcmd.store.notifications.Breaker`) so one slow or dead receiver
costs the others nothing. `batch` puts them together for one delivery task."""

from __future__ import annotations

from collections import defaultdict

from devcmd.domain.delivery.batch import Batch, origin
from devcmd.domain.delivery.message import body
from devcmd.domain.delivery.transport import Sender
from devcmd.services import Services
from devcmd.store import keys

__all__ = ["Sender", "body", "deliver", "origin"]


def deliver(svc: Services, sender: Sender, refs: list[list[str]]) -> dict[str, int]:
    """Attempt the referenced notifications (appId, deviceId, id); returns counts by outcome.

    Records no longer pending are taken off the due set without an attempt. State is read
    once up front and written back in one go; a receiver whose breaker is open (or opens
    during the task) is not contacted, and its notifications wait without spending an attempt.
    """
    records = _pending(svc, refs)
    pending = {(r["appId"], r["deviceId"], r["id"]) for r in records}
    svc.notifications.settle([tuple(ref) for ref in refs if tuple(ref) not in pending])
    # A callback tells the application a command's fate: none leaves before the replicas asked
    # for (REDIS_MIN_REPLICAS_ACK) hold the state change behind it (else the task fails, and
    # the records, still leased, are sent when their lease ends).
    svc.replicas.hold_all(keys.device(r["appId"], r["deviceId"]) for r in records)
    batch = Batch(svc, records)
    counts: dict[str, int] = {"postponed": 0}
    for outcome in sender.run(batch.send(sender)):
        counts[outcome] = counts.get(outcome, 0) + 1
    batch.commit()
    return counts


def _pending(svc: Services, refs: list[list[str]]) -> list[dict]:
    """The referenced records still pending, in one round trip."""
    by_device: dict[tuple[str, str], list[str]] = defaultdict(list)
    for app_id, device_id, notification_id in refs:
        by_device[app_id, device_id].append(notification_id)
    loaded = svc.notifications.load_by_device(by_device)
    return [r for r in loaded.values() if r["state"] == "pending"]
