"""A notification's state after an attempt: delivered, stopped (410), refused (a forbidden
target), failed (the receiver rejected it, or the schedule is used up) or pending again at its
next retry time."""

from __future__ import annotations

import random

MAX_HISTORY = 20  # attempts kept per notification
# 4xx answers that say "not now" rather than "not this request": retried like a 5xx. Any other
# 4xx (a receiver refusing a signature it cannot verify, a body it cannot read, a missing
# route) would get the same answer every time: the notification fails at once, kept for
# `devcmd notifications retry --failed` once the receiver is fixed.
RETRIED_4XX = frozenset({408, 425, 429})


def settle(record: dict, attempt: dict, schedule: list[float], now: int) -> str:
    """Record `attempt` on `record` and move its state; returns the outcome counted
    (`delivered`, `stopped`, `refused`, `failed` or `retrying`)."""
    code = attempt["status"]
    record["attempts"] = [*record["attempts"], attempt][-MAX_HISTORY:]
    record["attemptCount"] = record.get("attemptCount", 0) + 1
    record["nextAttempt"] = None
    if code is not None and 200 <= code < 300:
        record["state"] = "delivered"
    elif code == 410:
        record["state"] = "stopped"
    elif code is not None and 400 <= code < 500 and code not in RETRIED_4XX:
        record["state"] = "failed"
    elif attempt["error"] and attempt["error"].startswith("callbackUrl:"):
        record["state"] = "refused"
    elif record["attemptCount"] > len(schedule):
        record["state"] = "failed"
    else:
        delay = schedule[record["attemptCount"] - 1] * random.uniform(0.8, 1.2)  # jitter
        record["nextAttempt"] = now + int(delay * 1000)
    return "retrying" if record["nextAttempt"] else record["state"]


def receiver_failed(attempt: dict) -> bool:
    """Whether the attempt counts against the receiver's breaker: no answer, 5xx or 429."""
    code = attempt["status"]
    return code is None or code >= 500 or code == 429
