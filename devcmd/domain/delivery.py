"""Sending notifications: concurrent, signed (Standard Webhooks), in status order per command,
with a circuit breaker per receiver so one slow or dead receiver costs the others nothing."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from urllib.parse import urlsplit

import requests
from standardwebhooks.webhooks import Webhook

from devcmd.clock import now_ms
from devcmd.domain import auth, callback_guard
from devcmd.domain.notifications import STATUS_ORDER
from devcmd.services import Services

MAX_HISTORY = 20


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


class Sender:
    """Concurrent HTTP for one worker process: a thread pool, a keep-alive session per thread."""

    def __init__(self, threads: int = 16) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="callback")
        self._local = threading.local()

    def session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def deliver(svc: Services, sender: Sender, refs: list[list[str]]) -> dict[str, int]:
    """Attempt the referenced notifications (appId, deviceId, id); returns counts by outcome.

    Each command's notifications go out in status order, one command per thread; receivers
    whose breaker is open are not contacted (their notifications wait, no attempt is spent).
    """
    records = _pending(svc, refs)
    now = now_ms()
    open_until = {o: svc.notifications.breaker(o)[1] for o in {_origin(r["url"]) for r in records}}
    waiting = [r for r in records if open_until[_origin(r["url"])] > now]
    _postpone(svc, waiting, {r["id"]: open_until[_origin(r["url"])] for r in waiting})
    ready = [r for r in records if open_until[_origin(r["url"])] <= now]
    by_command: dict[str, list[dict]] = defaultdict(list)
    for record in sorted(ready, key=lambda r: STATUS_ORDER.get(r["status"], 9)):
        by_command[record["commandId"]].append(record)
    signers = _signers(svc, {r["appId"] for r in ready})
    outcomes = sender.pool.map(
        lambda sequence: _send_in_order(svc, sender, signers, sequence), by_command.values()
    )
    counts = {"postponed": len(waiting)}
    for outcome in (o for sequence in outcomes for o in sequence):
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def _pending(svc: Services, refs: list[list[str]]) -> list[dict]:
    by_device: dict[tuple[str, str], list[str]] = defaultdict(list)
    for app_id, device_id, notification_id in refs:
        by_device[app_id, device_id].append(notification_id)
    records = []
    for (app_id, device_id), ids in by_device.items():
        loaded = svc.notifications.load(app_id, device_id, ids)
        records += [r for r in loaded if r and r["state"] == "pending"]
    return records


def _send_in_order(svc, sender: Sender, signers: dict, sequence: list[dict]) -> list[str]:
    """Send one command's notifications in order; after a failure the rest wait behind it."""
    outcomes = []
    for position, record in enumerate(sequence):
        blocker = _earlier_undelivered(svc, record) or _breaker_open_until(svc, record)
        if blocker is not None:
            _postpone(
                svc, sequence[position:], dict.fromkeys(_ids(sequence[position:]), blocker + 1)
            )
            return [*outcomes, *["postponed"] * (len(sequence) - position)]
        outcome = _attempt(svc, sender, signers.get(record["appId"], []), record)
        outcomes.append(outcome)
        if outcome == "retrying":
            due = record["nextAttempt"] + 1
            _postpone(
                svc, sequence[position + 1 :], dict.fromkeys(_ids(sequence[position + 1 :]), due)
            )
            return [*outcomes, *["postponed"] * (len(sequence) - position - 1)]
    return outcomes


def _ids(records: list[dict]) -> list[str]:
    return [r["id"] for r in records]


def _breaker_open_until(svc: Services, record: dict) -> int | None:
    """When the receiver's breaker closes, if it is open now (checked before every attempt)."""
    until = svc.notifications.breaker(_origin(record["url"]))[1]
    return until if until > now_ms() else None


def _earlier_undelivered(svc: Services, record: dict) -> int | None:
    """The due time of an earlier notification of the same command still pending, if any."""
    order = STATUS_ORDER.get(record["status"], 9)
    earlier = [s for s, rank in STATUS_ORDER.items() if rank < order]
    ids = [f"msg_{record['commandId']}_{status}" for status in earlier]
    found = svc.notifications.load(record["appId"], record["deviceId"], ids)
    pending = [r["nextAttempt"] for r in found if r and r["state"] == "pending"]
    return max(pending) if pending else None


def _attempt(svc: Services, sender: Sender, signers: list[Webhook], record: dict) -> str:
    """One POST; updates the record's state, history and schedule. Returns the outcome."""
    url, started = record["url"], time.monotonic()
    attempt = {"at": now_ms(), "status": None, "latencyMs": None, "error": None}
    try:
        callback_guard.check_resolved(url, svc.config.callback_allow_private)
        payload = json.dumps(body(record), separators=(",", ":"))
        response = sender.session().post(
            url,
            data=payload,
            headers=_headers(signers, record, payload),
            timeout=(min(svc.config.callback_timeout, 3.0), svc.config.callback_timeout),
            allow_redirects=False,
        )
        attempt["status"] = response.status_code
    except callback_guard.Refused as exc:
        attempt["error"] = exc.message
    except requests.RequestException as exc:
        attempt["error"] = f"{type(exc).__name__}: {exc}"[:300]
    attempt["latencyMs"] = round((time.monotonic() - started) * 1000, 1)
    return _settle(svc, record, attempt)


def _settle(svc: Services, record: dict, attempt: dict) -> str:
    code, now = attempt["status"], now_ms()
    record["attempts"] = [*record["attempts"], attempt][-MAX_HISTORY:]
    record["attemptCount"] = record.get("attemptCount", 0) + 1
    origin = _origin(record["url"])
    if code is not None and 200 <= code < 300:
        record["state"], outcome = "delivered", "delivered"
    elif code == 410:
        record["state"], outcome = "stopped", "stopped"
    elif attempt["error"] and attempt["error"].startswith("callbackUrl:"):
        record["state"], outcome = "refused", "refused"
    elif record["attemptCount"] > len(svc.config.retry_schedule):
        record["state"], outcome = "failed", "failed"
    else:
        delay = svc.config.retry_schedule[record["attemptCount"] - 1] * random.uniform(0.8, 1.2)
        record["nextAttempt"], outcome = now + int(delay * 1000), "retrying"
    if outcome != "retrying":
        record["nextAttempt"] = None
    receiver_failed = code is None or code >= 500 or code == 429
    svc.notifications.record_outcome(
        origin,
        not receiver_failed,
        svc.config.callback_breaker_failures,
        int(svc.config.callback_breaker_cooldown * 1000),
        now,
    )
    svc.notifications.save([record])
    if outcome == "retrying":
        svc.notifications.schedule([record], {record["id"]: record["nextAttempt"]})
    return outcome


def _postpone(svc: Services, records: list[dict], due: dict[str, int]) -> None:
    """Wait without spending an attempt (breaker open, or an earlier status still pending)."""
    for record in records:
        record["nextAttempt"] = due[record["id"]]
    svc.notifications.save(records)
    svc.notifications.schedule(records, due)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def _signers(svc: Services, app_ids: set[str]) -> dict[str, list[Webhook]]:
    """Standard Webhooks signers per application: its current secret, and one in grace."""
    apps = {app_id: svc.apps.get(app_id) for app_id in app_ids}
    return {
        app_id: [Webhook(secret) for secret in auth.webhook_secrets(app)]
        for app_id, app in apps.items()
        if app
    }


def _headers(signers: list[Webhook], notification: dict, payload: str) -> dict[str, str]:
    """Standard Webhooks headers; `webhook-id` is the same on every retry of a notification."""
    now = datetime.now(UTC)
    headers = {
        "Content-Type": "application/json",
        "webhook-id": notification["id"],
        "webhook-timestamp": str(int(now.timestamp())),
    }
    if signers:
        signatures = (signer.sign(notification["id"], now, payload) for signer in signers)
        headers["webhook-signature"] = " ".join(signatures)
    return headers
