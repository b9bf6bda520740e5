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

import urllib3
from standardwebhooks.webhooks import Webhook

from devcmd import metrics
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
    """Concurrent HTTP for one worker process: a thread pool and one keep-alive connection pool
    (urllib3: thread-safe, and about twice as fast per request as going through requests)."""

    def __init__(self, threads: int = 16) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="callback")
        self.http = urllib3.PoolManager(maxsize=threads, retries=False)

    def post(self, url: str, payload: str, headers: dict[str, str], timeout: float) -> int:
        """POST and return the status; redirects are not followed. Raises urllib3 errors."""
        response = self.http.request(
            "POST",
            url,
            body=payload.encode(),
            headers=headers,
            timeout=urllib3.Timeout(connect=min(timeout, 3.0), read=timeout),
            redirect=False,
            retries=False,
        )
        return response.status

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.http.clear()


def deliver(svc: Services, sender: Sender, refs: list[list[str]]) -> dict[str, int]:
    """Attempt the referenced notifications (appId, deviceId, id); returns counts by outcome.

    State is read once up front and written back in one round trip: the sending threads do
    only HTTP. Each command's notifications go out in status order, one command per thread;
    a receiver whose breaker is open (or opens during the task) is not contacted, and its
    notifications wait without spending an attempt.
    """
    records = _pending(svc, refs)
    pending = {(r["appId"], r["deviceId"], r["id"]) for r in records}
    svc.notifications.settle([tuple(ref) for ref in refs if tuple(ref) not in pending])
    batch = _Batch(svc, records)
    by_command: dict[str, list[dict]] = defaultdict(list)
    for record in sorted(records, key=lambda r: STATUS_ORDER.get(r["status"], 9)):
        by_command[record["commandId"]].append(record)
    outcomes = sender.pool.map(lambda seq: batch.send_in_order(sender, seq), by_command.values())
    counts: dict[str, int] = {"postponed": 0}
    for outcome in (o for sequence in outcomes for o in sequence):
        counts[outcome] = counts.get(outcome, 0) + 1
    batch.commit()
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


class _Batch:
    """One delivery task's view: breakers, blockers, refusals and signers read once; outcomes
    collected in memory and written in `commit`."""

    def __init__(self, svc: Services, records: list[dict]) -> None:
        self.svc = svc
        self.lock = threading.Lock()
        origins = {_origin(r["url"]) for r in records}
        self.breakers = {o: list(svc.notifications.breaker(o)) for o in origins}
        self.failed_before = {o: b[0] > 0 for o, b in self.breakers.items()}
        self.blockers = _blockers(svc, records)
        self.refusals = {url: _refusal(svc, url) for url in {r["url"] for r in records}}
        self.signers = _signers(svc, {r["appId"] for r in records})
        self.touched: list[dict] = []

    def send_in_order(self, sender: Sender, sequence: list[dict]) -> list[str]:
        """Send one command's notifications in order; after a failure the rest wait behind it."""
        outcomes = []
        for position, record in enumerate(sequence):
            wait = self.blockers.get(record["id"]) or self._open_until(record)
            if wait is not None:
                self._postpone(sequence[position:], wait + 1)
                return [*outcomes, *["postponed"] * (len(sequence) - position)]
            outcome = self._attempt(sender, record)
            outcomes.append(outcome)
            if outcome == "retrying":
                self._postpone(sequence[position + 1 :], record["nextAttempt"] + 1)
                return [*outcomes, *["postponed"] * (len(sequence) - position - 1)]
        return outcomes

    def _open_until(self, record: dict) -> int | None:
        until = self.breakers[_origin(record["url"])][1]
        return until if until > now_ms() else None

    def _attempt(self, sender: Sender, record: dict) -> str:
        url, started = record["url"], time.monotonic()
        attempt = {"at": now_ms(), "status": None, "latencyMs": None, "error": None}
        attempt["error"] = self.refusals[url]
        if attempt["error"] is None:
            payload = json.dumps(body(record), separators=(",", ":"))
            headers = _headers(self.signers.get(record["appId"], []), record, payload)
            try:
                timeout = self.svc.config.callback_timeout
                attempt["status"] = sender.post(url, payload, headers, timeout)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                attempt["error"] = f"{type(exc).__name__}: {exc}"[:300]
            metrics.CALLBACK_DURATION.observe(time.monotonic() - started)
        attempt["latencyMs"] = round((time.monotonic() - started) * 1000, 1)
        outcome = self._settle(record, attempt)
        metrics.CALLBACK_ATTEMPTS.labels(outcome).inc()
        return outcome

    def _settle(self, record: dict, attempt: dict) -> str:
        code, now, config = attempt["status"], now_ms(), self.svc.config
        record["attempts"] = [*record["attempts"], attempt][-MAX_HISTORY:]
        record["attemptCount"] = record.get("attemptCount", 0) + 1
        record["nextAttempt"] = None
        if code is not None and 200 <= code < 300:
            record["state"] = "delivered"
        elif code == 410:
            record["state"] = "stopped"
        elif attempt["error"] and attempt["error"].startswith("callbackUrl:"):
            record["state"] = "refused"
        elif record["attemptCount"] > len(config.retry_schedule):
            record["state"] = "failed"
        else:
            delay = config.retry_schedule[record["attemptCount"] - 1] * random.uniform(0.8, 1.2)
            record["nextAttempt"] = now + int(delay * 1000)
        self._count(_origin(record["url"]), code is None or code >= 500 or code == 429, now)
        with self.lock:
            self.touched.append(record)
        return "retrying" if record["nextAttempt"] else record["state"]

    def _count(self, origin: str, failed: bool, now: int) -> None:
        """Consecutive failures of a receiver; at the threshold its breaker opens."""
        with self.lock:
            breaker = self.breakers[origin]
            breaker[0] = breaker[0] + 1 if failed else 0
            if failed and breaker[0] >= self.svc.config.callback_breaker_failures:
                breaker[1] = now + int(self.svc.config.callback_breaker_cooldown * 1000)

    def _postpone(self, records: list[dict], due: int) -> None:
        with self.lock:
            for record in records:
                record["nextAttempt"] = due
                self.touched.append(record)

    def commit(self) -> None:
        """Write every touched record, schedule every wait, and persist the breakers."""
        waiting = [r for r in self.touched if r["nextAttempt"]]
        settled = [
            (r["appId"], r["deviceId"], r["id"]) for r in self.touched if not r["nextAttempt"]
        ]
        self.svc.notifications.save(self.touched)
        self.svc.notifications.schedule(waiting, {r["id"]: r["nextAttempt"] for r in waiting})
        self.svc.notifications.settle(settled)
        failed = [r for r in self.touched if r["state"] == "failed"]
        self.svc.notifications.mark_failed(failed, now_ms())
        for origin, (failures, until) in self.breakers.items():
            if failures or self.failed_before[origin]:
                self.svc.notifications.set_breaker(origin, failures, until)


def _blockers(svc: Services, records: list[dict]) -> dict[str, int]:
    """For notifications with an earlier status of the same command still pending elsewhere:
    when that one is next due (they wait behind it)."""
    ids = {r["id"] for r in records}
    blockers = {}
    for record in records:
        rank = STATUS_ORDER.get(record["status"], 9)
        earlier = [
            f"msg_{record['commandId']}_{status}"
            for status, other in STATUS_ORDER.items()
            if other < rank and f"msg_{record['commandId']}_{status}" not in ids
        ]
        found = svc.notifications.load(record["appId"], record["deviceId"], earlier)
        due = [r["nextAttempt"] for r in found if r and r["state"] == "pending"]
        if due:
            blockers[record["id"]] = max(due)
    return blockers


def _refusal(svc: Services, url: str) -> str | None:
    """Why a target must not be contacted now (resolved once per task), or None."""
    try:
        callback_guard.check_resolved(url, svc.config.callback_allow_private)
    except callback_guard.Refused as exc:
        return exc.message
    return None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def _signers(svc: Services, app_ids: set[str]) -> dict[str, list[Webhook]]:
    """Standard Webhooks signers per application: its current secret, and one in grace."""
    apps = {app_id: svc.apps.signing_record(app_id) for app_id in app_ids}
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
