"""One delivery task's run: its records, the receivers' breakers, the refusals and signers read
once up front; attempts made on the sender's event loop; every outcome written back in one
go at the end (the sending coroutines do only HTTP and bookkeeping in memory)."""

from __future__ import annotations

import asyncio
import time
from functools import cache
from urllib.parse import urlsplit

from prometheus_client import Counter

from devcmd import metrics
from devcmd.clock import now_ms
from devcmd.domain import callback_guard, retention
from devcmd.domain.delivery import message, ordering, retry, signing
from devcmd.domain.delivery.transport import Sender, TransportError
from devcmd.services import Services
from devcmd.store.notifications import Breaker

# States after which a record is never attempted again and that NOTIFICATION_RETENTION
# removes; `failed` and `refused` records stay as long as their command (an operator re-sends
# or investigates them).
SETTLED_FOR_GOOD = ("delivered", "stopped")


def origin(url: str) -> str:
    """The receiver a URL names, as its breaker is keyed: `scheme://host:port`."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


class Batch:
    """The notifications of one delivery task and what sending them needs."""

    def __init__(self, svc: Services, records: list[dict]) -> None:
        self.svc = svc
        self.breakers = svc.notifications.breakers({origin(r["url"]) for r in records})
        self.failed_before = {o for o, b in self.breakers.items() if b.failures}
        self.blockers = ordering.blockers(svc, records)
        self.refusals = {url: _refusal(svc, url) for url in {r["url"] for r in records}}
        self.signers = signing.signers(svc, {r["appId"] for r in records})
        self.sequences = ordering.sequences(records)
        self.touched: list[dict] = []

    async def send(self, sender: Sender) -> list[str]:
        """Every command's sequence, `sender.concurrency` at a time; returns the outcome of
        every record. A fixed set of workers takes the sequences one after another: no task
        and no semaphore wait per command (a batch holds thousands)."""
        sequences = iter(self.sequences)
        outcomes: list[str] = []

        async def worker() -> None:
            for sequence in sequences:  # one event loop thread: each sequence goes to one worker
                outcomes.extend(await self.send_in_order(sender, sequence))

        workers = min(sender.concurrency, len(self.sequences))
        await asyncio.gather(*(worker() for _ in range(workers)))
        return outcomes

    async def send_in_order(self, sender: Sender, sequence: list[dict]) -> list[str]:
        """One command's notifications in status order; after a failure the rest wait behind
        it, and none go to a receiver whose breaker is open."""
        outcomes = []
        for position, record in enumerate(sequence):
            breaker = self.breakers[origin(record["url"])]
            now = now_ms()
            wait = self.blockers.get(record["id"])
            if wait is None and breaker.is_open(now):
                wait = breaker.open_until
            if wait is not None:
                self._postpone(sequence[position:], wait + 1)
                return [*outcomes, *["postponed"] * (len(sequence) - position)]
            outcome = await self._attempt(sender, record, breaker)
            outcomes.append(outcome)
            if outcome == "retrying":
                self._postpone(sequence[position + 1 :], record["nextAttempt"] + 1)
                return [*outcomes, *["postponed"] * (len(sequence) - position - 1)]
        return outcomes

    async def _attempt(self, sender: Sender, record: dict, breaker: Breaker) -> str:
        url, started = record["url"], time.monotonic()
        attempt = {"at": now_ms(), "status": None, "latencyMs": None, "error": self.refusals[url]}
        if attempt["error"] is None:
            payload = message.payload(record)
            headers = signing.headers(self.signers.get(record["appId"], []), record, payload)
            try:
                timeout = self.svc.config.callback_timeout
                attempt["status"] = await sender.post(url, payload, headers, timeout)
            except TransportError as exc:
                attempt["error"] = str(exc)
            metrics.CALLBACK_DURATION.observe(time.monotonic() - started)
        attempt["latencyMs"] = round((time.monotonic() - started) * 1000, 1)
        config, now = self.svc.config, now_ms()
        outcome = retry.settle(record, attempt, config.retry_schedule, now)
        cooldown_ms = int(config.callback_breaker_cooldown * 1000)
        failed = retry.receiver_failed(attempt)
        breaker.count(failed, now, config.callback_breaker_failures, cooldown_ms)
        self.touched.append(record)
        _attempts(outcome).inc()
        return outcome

    def _postpone(self, records: list[dict], due: int) -> None:
        for record in records:
            record["nextAttempt"] = due
            self.touched.append(record)

    def commit(self) -> None:
        """Write every touched record, schedule every wait, and persist the breakers."""
        notifications = self.svc.notifications
        waiting = [r for r in self.touched if r["nextAttempt"]]
        settled = [
            (r["appId"], r["deviceId"], r["id"]) for r in self.touched if not r["nextAttempt"]
        ]
        notifications.save(self.touched)
        if retention.removes_notifications_first(self.svc.config):
            notifications.list_settled(
                [r for r in self.touched if r["state"] in SETTLED_FOR_GOOD], now_ms()
            )
        notifications.schedule(waiting, {r["id"]: r["nextAttempt"] for r in waiting})
        notifications.settle(settled)
        notifications.mark_failed([r for r in self.touched if r["state"] == "failed"], now_ms())
        notifications.save_breakers(
            {o: b for o, b in self.breakers.items() if b.failures or o in self.failed_before}
        )


@cache
def _attempts(outcome: str) -> Counter:
    """The attempt counter of one outcome, looked up once (`labels` costs a few microseconds
    on every call)."""
    return metrics.CALLBACK_ATTEMPTS.labels(outcome)


def _refusal(svc: Services, url: str) -> str | None:
    """Why a target must not be contacted now (resolved once per task), or None."""
    try:
        callback_guard.check_resolved(url, svc.config.callback_allow_private)
    except callback_guard.Refused as exc:
        return exc.message
    return None
