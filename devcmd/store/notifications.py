"""The per-device notification outbox: Lua transitions append to it, senders drain it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import orjson
from redis import Redis

from devcmd.store import keys
from devcmd.store.scripts import Scripts


@dataclass(frozen=True)
class Event:
    """One transition step: the same status change, at one time, of one or more commands."""

    status: str
    at_ms: int
    command_ids: list[str]

    @classmethod
    def parse(cls, raw: str) -> Event:
        status, at_ms, command_ids = raw.split(" ")
        return cls(status, int(at_ms), command_ids.split(","))


class OutboxStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def mark_dirty(self, app_id: str, device_id: str) -> None:
        self.redis.sadd(keys.dirty_outboxes(), f"{app_id}/{device_id}")

    def dirty(self, limit: int = 1000) -> list[tuple[str, str]]:
        return [
            tuple(m.split("/", 1)) for m in self.redis.srandmember(keys.dirty_outboxes(), limit)
        ]

    def lock(self, app_id: str, device_id: str, ttl_ms: int) -> str | None:
        """Take the device's drain lock; returns its token, or None if someone holds it."""
        token = uuid.uuid4().hex
        if self.redis.set(keys.outbox_lock(app_id, device_id), token, nx=True, px=ttl_ms):
            return token
        return None

    def unlock(self, app_id: str, device_id: str, token: str) -> None:
        key = keys.outbox_lock(app_id, device_id)
        if self.redis.get(key) == token:
            self.redis.delete(key)

    def peek(self, app_id: str, device_id: str, count: int) -> list[Event]:
        raw = self.redis.lrange(keys.outbox(app_id, device_id), 0, count - 1)
        return [Event.parse(item) for item in raw]

    def drop(self, app_id: str, device_id: str, count: int) -> int:
        """Remove the first `count` events (handed over); returns how many remain."""
        key = keys.outbox(app_id, device_id)
        pipe = self.redis.pipeline(transaction=True)  # one slot: the device's
        pipe.ltrim(key, count, -1)
        pipe.llen(key)
        remaining = pipe.execute()[1]
        if remaining == 0:
            self.redis.srem(keys.dirty_outboxes(), f"{app_id}/{device_id}")
        return remaining

    def callback_urls(self, app_id: str, device_id: str, command_ids: list[str]) -> list:
        return self.redis.hmget(keys.callbacks(app_id, device_id), command_ids)

    def result_details(self, app_id: str, device_id: str, command_ids: list[str]) -> list:
        """The devices' `resultDetail` of finished commands (None where there is none)."""
        lives = self.redis.hmget(keys.lifecycle(app_id, device_id), command_ids)
        return [
            orjson.loads(life).get("result", {}).get("resultDetail") if life else None
            for life in lives
        ]


class NotificationStore:
    """Notification records (state and attempt history), the retry schedule, receiver breakers."""

    def __init__(self, redis: Redis, scripts: Scripts) -> None:
        self.redis = redis
        self.scripts = scripts

    def create(self, records: list[dict], lease_until: int) -> list[dict]:
        """Store new records, each leased on the due set until `lease_until` (ms); returns those
        that did not exist yet.

        The lease is what makes delivery survive a crash: a record whose delivery task dies (or
        is never enqueued) falls due when the lease ends and `retry_due` sends it. A re-drained
        record that already exists keeps its history and its place on the due set (NX); if it
        was settled meanwhile, the delivery that finds it so drops it from the set.

        The due set and the records are in different slots, so the lease is written first and
        the records after it (each device's in its own slot): a crash in between leaves due
        references with no record, which delivery settles; a record never leased (that nothing
        would ever send) cannot happen.
        """
        if not records:
            return []
        members = {_due_member(r): lease_until for r in records}
        self.redis.zadd(keys.notifications_due(), members, nx=True)
        pipe = self.redis.pipeline(transaction=False)
        for record in records:
            key = keys.notifications(record["appId"], record["deviceId"])
            pipe.hsetnx(key, record["id"], orjson.dumps(record))
        replies = pipe.execute()
        return [record for record, new in zip(records, replies, strict=True) if new]

    def save(self, records: list[dict]) -> None:
        """Write records (keyed by their `id`) of possibly several devices in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for record in records:
            key = keys.notifications(record["appId"], record["deviceId"])
            pipe.hset(key, record["id"], orjson.dumps(record))
        pipe.execute()

    def load(self, app_id: str, device_id: str, ids: list[str]) -> list[dict | None]:
        raw = self.redis.hmget(keys.notifications(app_id, device_id), ids) if ids else []
        return [orjson.loads(r) if r else None for r in raw]

    def settle(self, refs: list[tuple[str, str, str]]) -> None:
        """Take notifications that need no further attempt off the due set."""
        if refs:
            self.redis.zrem(keys.notifications_due(), *("/".join(ref) for ref in refs))

    def schedule(self, records: list[dict], due_ms: dict[str, int]) -> None:
        """Put notifications on the retry schedule at their due times (ms by id)."""
        members = {_due_member(r): due_ms[r["id"]] for r in records}
        if members:
            self.redis.zadd(keys.notifications_due(), members)

    def mark_failed(self, records: list[dict], now: int) -> None:
        if records:
            self.redis.zadd(keys.notifications_failed(), {_due_member(r): now for r in records})

    def failed_since(self, since_ms: int, limit: int) -> list[tuple[str, str, str]]:
        members = self.redis.zrangebyscore(keys.notifications_failed(), since_ms, "+inf", 0, limit)
        return [tuple(m.split("/", 2)) for m in members]

    def unmark_failed(self, refs: list[tuple[str, str, str]]) -> None:
        if refs:
            self.redis.zrem(keys.notifications_failed(), *("/".join(ref) for ref in refs))

    def claim_due(self, now: int, limit: int, lease_until: int) -> list[tuple[str, str, str]]:
        """Claim due notifications, each by exactly one caller, leased until `lease_until`."""
        claimed = self.scripts.claim_due(
            keys=[keys.notifications_due()], args=[now, limit, lease_until]
        )
        return [tuple(m.split("/", 2)) for m in claimed]

    def breaker(self, origin: str) -> tuple[int, int]:
        """(consecutive failures, open until ms) of a receiver."""
        failures, until = self.redis.hmget(keys.receiver(origin), ["failures", "openUntil"])
        return int(failures or 0), int(until or 0)

    def set_breaker(self, origin: str, failures: int, open_until: int) -> None:
        """Persist a receiver's consecutive failures and breaker state (kept a day at most)."""
        key = keys.receiver(origin)
        if failures == 0:
            self.redis.delete(key)
            return
        pipe = self.redis.pipeline(transaction=True)  # one key
        pipe.hset(key, mapping={"failures": failures, "openUntil": open_until})
        pipe.expire(key, 86_400)
        pipe.execute()


def _due_member(record: dict) -> str:
    return f"{record['appId']}/{record['deviceId']}/{record['id']}"
