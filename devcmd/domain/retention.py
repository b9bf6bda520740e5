"""Retention: finished commands, finished revocation tasks and settled notifications are
removed once older than COMMAND_RETENTION, TASK_RETENTION and NOTIFICATION_RETENTION
(delivered or stopped notification records; failed ones stay as long as their command, and
leave the re-send index after NOTIFICATION_RETENTION).

Beat runs `forget_due` once per index bucket; each run looks at the devices of its bucket whose
finished work is due and removes at most RETENTION_BATCH commands (and as many tasks), so the
work per tick is bounded and never scans keys. A removed command or task is unknown from then
on (404). A command whose callback is still being attempted, or still waiting in its device's
outbox, is kept until that settles; its notification records go with it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from devcmd.clock import now_ms
from devcmd.config import Config
from devcmd.services import Services

DEVICES_PER_RUN = 1000  # devices one bucket's run looks at
IDLE_MS = 24 * 3600 * 1000  # how long a device waits for its next look when nothing is retained


def forget_due(
    svc: Services, buckets: Iterable[int] | None = None, now: int | None = None
) -> Counter:
    """Remove what is due in these buckets (default: all) by `now` (default: the clock);
    returns counts of what went."""
    counts: Counter = Counter()
    now = now_ms() if now is None else now
    for bucket in svc.buckets if buckets is None else buckets:
        counts += _forget_bucket(svc, bucket, now)
    return counts


def _forget_bucket(svc: Services, bucket: int, now: int) -> Counter:
    counts: Counter = Counter()
    if svc.config.notification_retention > 0:
        cutoff = now - _ms(svc.config.notification_retention)
        counts["failed_unlisted"] += svc.retention.trim_failed_notifications(bucket, cutoff)
    budget = svc.config.retention_batch
    for app_id, device_id in svc.retention.due_devices(bucket, now, DEVICES_PER_RUN):
        if counts["commands"] >= budget or counts["tasks"] >= budget:
            break
        left = budget - max(counts["commands"], counts["tasks"])
        done = forget_device(svc, app_id, device_id, now, left)
        counts.update(done)
    return counts


def forget_device(svc: Services, app_id: str, device_id: str, now: int, budget: int) -> Counter:
    """Remove one device's finished work that is due (at most `budget` commands and as many
    tasks) and set when to look at the device next."""
    # Pay the sweeps' status debt first: it names finished commands, and a device nobody
    # queries by status would otherwise keep it forever.
    svc.commands.settle(app_id, [device_id])
    done = Counter(
        commands=_forget_commands(svc, app_id, device_id, now, budget),
        tasks=_forget_tasks(svc, app_id, device_id, now, budget),
    )
    notified, next_notified = _forget_notified(svc, app_id, device_id, now, budget)
    done["notifications"] += notified
    exhausted = done["commands"] >= budget or done["tasks"] >= budget
    if not exhausted and svc.retention.forget_deleted_device(app_id, device_id):
        done["devices"] = 1
        return done
    # A device whose due work had to wait (an undrained outbox, a callback still being sent)
    # goes behind the devices due before it: no device keeps the others waiting.
    later = now if exhausted else max(_next_due(svc, app_id, device_id, now), now + 1)
    if next_notified is not None:
        later = min(later, max(next_notified, now + 1))
    svc.retention.schedule(app_id, device_id, later)
    return done


def _forget_commands(svc: Services, app_id: str, device_id: str, now: int, budget: int) -> int:
    retention = _ms(svc.config.command_retention)
    if not retention:
        return 0
    cutoff = now - retention
    waiting = svc.retention.outbox_head_ms(app_id, device_id)
    if waiting is not None:  # commands that ended after it may still have a callback to send
        cutoff = min(cutoff, waiting - 1)
    removed = 0
    while removed < budget:
        due = svc.retention.due_commands(app_id, device_id, cutoff, budget - removed)
        if not due.entries:
            break
        keep = svc.retention.notifying(app_id, device_id, due.ids)
        gone = svc.retention.forget_commands(app_id, device_id, due, keep)
        if gone < 0 or keep:  # another run took them; or the kept ones went back to the tail
            removed += max(gone, 0)
            break
        removed += gone
    return removed


def _forget_notified(
    svc: Services, app_id: str, device_id: str, now: int, budget: int
) -> tuple[int, int | None]:
    """Remove records of notifications that settled for good (delivered, stopped) more than
    NOTIFICATION_RETENTION ago; returns (how many, when the next one falls due or None)."""
    retention = _ms(svc.config.notification_retention)
    if not retention:
        return 0, None
    removed, next_ms = svc.retention.forget_notified(app_id, device_id, now - retention, budget)
    return removed, (None if next_ms is None else next_ms + retention)


def _forget_tasks(svc: Services, app_id: str, device_id: str, now: int, budget: int) -> int:
    retention = _ms(svc.config.task_retention)
    if not retention:
        return 0
    removed = 0
    while removed < budget:
        due = svc.retention.due_tasks(
            app_id, device_id, now - retention, min(budget - removed, 500)
        )
        if not due.entries:
            break
        gone = svc.retention.forget_tasks(app_id, device_id, due)
        if gone < 0:
            break
        removed += due.entries
    return removed


def _next_due(svc: Services, app_id: str, device_id: str, now: int) -> int:
    """When the device's oldest finished command or task falls due; work that ends later falls
    due later than `now` plus its retention, so that is the latest a look is needed."""
    retentions = (_ms(svc.config.command_retention), _ms(svc.config.task_retention))
    candidates = [now + r for r in retentions if r]
    for head, retention in zip(svc.retention.heads(app_id, device_id), retentions, strict=True):
        if head is not None and retention:
            candidates.append(head + retention)
    return min(candidates, default=now + IDLE_MS)


def removes_notifications_first(config: Config) -> bool:
    """Whether settled notification records go before their command (NOTIFICATION_RETENTION
    shorter than COMMAND_RETENTION, or commands kept forever): only then does delivery list
    them for retention; otherwise they go with their command."""
    notified, command = config.notification_retention, config.command_retention
    return notified > 0 and (command == 0 or notified < command)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def register_existing(svc: Services) -> int:
    """Put every device of every application (live ones, and deleted ones that still have
    commands) on the retention index: for a store written before retention existed
    (store.migration.migrate does it; safe to run twice). Returns how many devices it saw."""
    return svc.retention.register_existing(now_ms())
