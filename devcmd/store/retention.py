"""Retention: which devices have finished work due for removal, and its removal.

A device enters its bucket's retention index (`keys.retention`) when it is registered; the
scripts that end a command or a task append it to the device's finished lists
(finished_index.lua). Removal itself is forget_commands.lua and forget_tasks.lua, after the
application-level entries (see their headers for the order and why).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import orjson
from redis import Redis

from devcmd.store import keys
from devcmd.store.scripts import Scripts

# Every status but PENDING sends a notification (`msg_<id>_<STATUS>`).
STATUSES_NOTIFIED = keys.COMMAND_STATUSES[1:]
FORGET_STATUSES = ("PENDING", "SUCCESSFUL", "FAILED", "TIMEOUT", "CANCELED", "EXPIRED")


@dataclass(frozen=True)
class Due:
    """The head of a device's finished list that is due: entries, their first as read, ids."""

    entries: int
    first: str
    ids: list[str]
    next_ms: int | None  # finish time of the first entry not taken (None: list exhausted)


def member(app_id: str, device_id: str) -> str:
    return f"{app_id}/{device_id}"


class RetentionStore:
    def __init__(self, redis: Redis, scripts: Scripts, buckets: int) -> None:
        self.redis = redis
        self.scripts = scripts
        self.buckets = buckets

    def _key(self, device_id: str) -> str:
        return keys.retention(keys.bucket(device_id, self.buckets))

    def register(self, app_id: str, device_id: str, due_ms: int) -> None:
        """Put a new device on its bucket's retention index (written before the device exists,
        so a crash cannot leave a device retention never looks at)."""
        self.redis.zadd(self._key(device_id), {member(app_id, device_id): due_ms}, nx=True)

    def register_existing(self, now: int) -> int:
        """Put every device on the retention index (see `register_existing`)."""
        return register_existing(self.redis, self.buckets, now)

    def command_devices(self, app_id: str) -> set[str]:
        """Devices of the application that have had commands (deleted ones too)."""
        return self.redis.smembers(keys.app_command_device_ids(app_id))

    def due_devices(self, bucket: int, now: int, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` devices of one bucket whose finished work may be due by `now`."""
        found = self.redis.zrangebyscore(keys.retention(bucket), "-inf", now, start=0, num=limit)
        return [tuple(m.split("/", 1)) for m in found]

    def schedule(self, app_id: str, device_id: str, due_ms: int) -> None:
        self.redis.zadd(self._key(device_id), {member(app_id, device_id): due_ms})

    def forget_unknown(self, app_id: str, device_id: str) -> None:
        """Drop the entry of a device whose registration was refused (no record exists)."""
        if not self.redis.exists(keys.device(app_id, device_id)):
            self.unregister(app_id, device_id)

    def unregister(self, app_id: str, device_id: str) -> None:
        self.redis.zrem(self._key(device_id), member(app_id, device_id))

    def due_commands(self, app_id: str, device_id: str, cutoff: int, most: int) -> Due:
        """The entries at the head of the device's finished list that ended by `cutoff`, at
        least one entry and otherwise at most about `most` commands."""
        return _due(self.redis.lrange(keys.finished(app_id, device_id), 0, 99), cutoff, most)

    def due_tasks(self, app_id: str, device_id: str, cutoff: int, most: int) -> Due:
        raw = self.redis.lrange(keys.finished_tasks(app_id, device_id), 0, most - 1)
        return _due(raw, cutoff, most)

    def heads(self, app_id: str, device_id: str) -> tuple[int | None, int | None]:
        """Finish ms of the oldest entry of the device's finished commands and tasks lists."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.lindex(keys.finished(app_id, device_id), 0)
        pipe.lindex(keys.finished_tasks(app_id, device_id), 0)
        return tuple(int(h.split(" ", 1)[0]) if h else None for h in pipe.execute())

    def outbox_head_ms(self, app_id: str, device_id: str) -> int | None:
        """When the oldest event still waiting in the device's outbox happened (None: empty):
        commands that ended later may still have a callback to be drained."""
        head = self.redis.lindex(keys.outbox(app_id, device_id), 0)
        return int(head.split(" ", 2)[1]) if head else None

    def notifying(self, app_id: str, device_id: str, ids: list[str]) -> list[str]:
        """Those of `ids` with a notification still being attempted (kept until it settles)."""
        urls = self.redis.hmget(keys.callbacks(app_id, device_id), ids)
        with_url = [cid for cid, url in zip(ids, urls, strict=True) if url]
        if not with_url:
            return []
        fields = [f"msg_{cid}_{s}" for cid in with_url for s in STATUSES_NOTIFIED]
        records = self.redis.hmget(keys.notifications(app_id, device_id), fields)
        per = len(STATUSES_NOTIFIED)
        return [
            cid
            for n, cid in enumerate(with_url)
            if any(_in_delivery(r) for r in records[n * per : (n + 1) * per])
        ]

    def forget_commands(self, app_id: str, device_id: str, due: Due, keep: list[str]) -> int:
        """Remove the due commands but `keep`: application entries first, then the device's
        (forget_commands.lua). Returns how many were removed; -1 if another run took them."""
        kept = set(keep)
        self.unlist_commands(app_id, [cid for cid in due.ids if cid not in kept])
        script_keys = keys.for_device(
            app_id,
            device_id,
            keys.finished,
            keys.statuses,
            keys.documents,
            keys.lifecycle,
            keys.callbacks,
            keys.device_commands,
            keys.expiry,
            keys.in_flight,
            keys.retransmit,
            keys.notifications,
            *map(keys.in_status, FORGET_STATUSES),
        )
        reply = self.scripts.forget_commands(keys=script_keys, args=[due.entries, due.first, *keep])
        return reply[0]

    def unlist_commands(self, app_id: str, command_ids: list[str]) -> None:
        """The application-level step: drop commands from the command map (their buckets of
        `command-devices:<n>`) and from layout 2's `command-devices`, kept read only for the
        commands created before layout 3 (one slot, the application's)."""
        by_bucket: dict[str, list[str]] = defaultdict(list)
        for command_id in command_ids:
            by_bucket[keys.command_devices(app_id, command_id)].append(command_id)
        pipe = self.redis.pipeline(transaction=False)
        for bucket, ids in by_bucket.items():
            pipe.hdel(bucket, *ids)
        for first in range(0, len(command_ids), 1000):
            pipe.hdel(keys.app_command_devices(app_id), *command_ids[first : first + 1000])
        pipe.execute()

    def forget_tasks(self, app_id: str, device_id: str, due: Due) -> int:
        """Remove the due finished tasks: application entries first, then the device's."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrem(keys.app_tasks(app_id), *due.ids)
        pipe.hdel(keys.app_task_devices(app_id), *due.ids)
        pipe.execute()
        task_keys = [keys.task(app_id, device_id, tid) for tid in due.ids]
        reply = self.scripts.forget_tasks(
            keys=[
                keys.finished_tasks(app_id, device_id),
                keys.device_tasks(app_id, device_id),
                *task_keys,
            ],
            args=[due.first, *due.ids],
        )
        return reply[0]

    def forget_deleted_device(self, app_id: str, device_id: str) -> bool:
        """Remove a deleted device that has nothing left (forget_device.lua), then its entries
        in its application's command devices and in the shared indexes (a crash in between
        leaves entries that name an empty device: counted as none, and removed next time)."""
        device_keys = keys.for_device(
            app_id,
            device_id,
            keys.device,
            keys.device_commands,
            keys.device_tasks,
            keys.finished,
            keys.finished_tasks,
            keys.pending,
            keys.statuses,
            keys.callbacks,
            keys.callback_urls,
            keys.status_debt,
            keys.expiry,
            keys.documents,
            keys.lifecycle,
            keys.in_flight,
            keys.retransmit,
            keys.outbox,
            keys.notifications,
            keys.notified,
            *map(keys.in_status, keys.COMMAND_STATUSES),
        )
        if not self.scripts.forget_device(keys=device_keys):
            return False
        self.redis.srem(keys.app_command_device_ids(app_id), device_id)
        number, name = keys.bucket(device_id, self.buckets), member(app_id, device_id)
        self.redis.zrem(keys.timers(number), name)
        self.redis.zrem(keys.retention(number), name)
        return True

    def forget_notified(
        self, app_id: str, device_id: str, cutoff: int, most: int
    ) -> tuple[int, int | None]:
        """Remove the device's records of notifications that settled for good by `cutoff`
        (at most `most` delivery batches' worth); returns (records removed, when the next
        entry settled or None)."""
        removed, _, next_ms = self.scripts.forget_notified(
            keys=keys.for_device(app_id, device_id, keys.notified, keys.notifications),
            args=[cutoff, most],
        )
        return removed, (None if next_ms < 0 else next_ms)

    def trim_failed_notifications(self, bucket: int, cutoff: int) -> int:
        """Drop references to notifications given up before `cutoff` from the re-send index."""
        return self.redis.zremrangebyscore(keys.notifications_failed(bucket), "-inf", cutoff)


def register_existing(redis: Redis, buckets: int, now: int) -> int:
    """Put every device of every application (live ones, and deleted ones that still have
    commands) on the retention index, due at `now`, for a store written before retention
    existed (migration.migrate runs it; safe to run twice: a device already there keeps its
    entry). Returns how many devices it saw."""
    seen = 0
    for app_id in sorted(redis.smembers(keys.apps())):
        device_ids = set(redis.zrange(keys.app_devices(app_id), 0, -1))
        device_ids |= redis.smembers(keys.app_command_device_ids(app_id))
        ordered = sorted(device_ids)
        for first in range(0, len(ordered), 1000):  # a round trip per 1,000 devices
            pipe = redis.pipeline(transaction=False)  # each device's bucket has its own key
            for device_id in ordered[first : first + 1000]:
                index = keys.retention(keys.bucket(device_id, buckets))
                pipe.zadd(index, {member(app_id, device_id): now}, nx=True)
            pipe.execute()
        seen += len(ordered)
    return seen


def _in_delivery(record: str | None) -> bool:
    """Whether a notification record (NotificationStore's JSON) is still being attempted: its
    own `state`, never a text search (its `detail` is the device's resultDetail, any JSON)."""
    return record is not None and orjson.loads(record).get("state") == "pending"


def _due(raw: list[str], cutoff: int, most: int) -> Due:
    """The leading entries of a finished list (`<ms> <id>[,<id>...]`) that ended by `cutoff`."""
    ids: list[str] = []
    taken = 0
    for entry in raw:
        ms, listed = entry.split(" ", 1)
        if int(ms) > cutoff or (taken and len(ids) >= most):
            return Due(taken, raw[0], ids, int(ms))
        ids += listed.split(",")
        taken += 1
    return Due(taken, raw[0] if raw else "", ids, None)
