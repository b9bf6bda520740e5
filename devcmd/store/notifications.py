"""The per-device notification outbox: Lua transitions append to it, senders drain it."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from redis import Redis

from devcmd.store import document, keys
from devcmd.store.scripts import Scripts


@dataclass
class Breaker:
    """A receiver's circuit breaker: its consecutive failures, and until when it is open (epoch
    ms; while open, nothing is sent to it and its notifications wait without spending an
    attempt). Read and written by `NotificationStore`."""

    failures: int = 0
    open_until: int = 0

    def is_open(self, now: int) -> bool:
        return self.open_until > now

    def count(self, failed: bool, now: int, threshold: int, cooldown_ms: int) -> None:
        """One more answer (or none) from the receiver; at `threshold` consecutive failures the
        breaker opens for `cooldown_ms`."""
        self.failures = self.failures + 1 if failed else 0
        if failed and self.failures >= threshold:
            self.open_until = now + cooldown_ms


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
    def __init__(self, redis: Redis, scripts: Scripts, buckets: int) -> None:
        self.redis = redis
        self.scripts = scripts
        self.buckets = buckets

    def _dirty_key(self, device_id: str) -> str:
        return keys.dirty_outboxes(keys.bucket(device_id, self.buckets))

    def mark_dirty(self, app_id: str, device_id: str) -> None:
        self.redis.sadd(self._dirty_key(device_id), f"{app_id}/{device_id}")

    def dirty(self, bucket: int, limit: int = 1000) -> list[tuple[str, str]]:
        """Up to `limit` devices of one bucket whose outbox may hold events."""
        members = self.redis.srandmember(keys.dirty_outboxes(bucket), limit)
        return [tuple(m.split("/", 1)) for m in members]

    def lock(self, app_id: str, device_id: str, ttl_ms: int) -> str | None:
        """Take the device's drain lock; returns its token, or None if someone holds it."""
        token = uuid.uuid4().hex
        if self.redis.set(keys.outbox_lock(app_id, device_id), token, nx=True, px=ttl_ms):
            return token
        return None

    def unlock(self, app_id: str, device_id: str, token: str) -> None:
        """Release the drain lock if it is still `token`'s, in one step on the server: a lock
        that expired and was taken by another drainer is left to it."""
        self.scripts.release_lock(keys=[keys.outbox_lock(app_id, device_id)], args=[token])

    def peek(self, app_id: str, device_id: str, count: int) -> list[Event]:
        raw = self.redis.lrange(keys.outbox(app_id, device_id), 0, count - 1)
        return [Event.parse(item) for item in raw]

    def drop(self, app_id: str, device_id: str, count: int, token: str, ttl_ms: int) -> int:
        """Remove the first `count` events (handed over) if the drain lock is still `token`'s,
        renewing it for `ttl_ms`; returns how many remain, or -1 if the lock was lost (then
        nothing is removed: whoever holds it now drains those events)."""
        remaining = self.scripts.drop_outbox(
            keys=[keys.outbox(app_id, device_id), keys.outbox_lock(app_id, device_id)],
            args=[token, count, ttl_ms],
        )
        if remaining == 0:
            self.redis.srem(self._dirty_key(device_id), f"{app_id}/{device_id}")
        return remaining

    def callback_urls(self, app_id: str, device_id: str, command_ids: list[str]) -> list:
        """The commands' callback URLs, in order (None where there is none); one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(keys.callbacks(app_id, device_id), command_ids)
        pipe.hgetall(keys.callback_urls(app_id, device_id))  # bounded (see keys)
        refs, table = pipe.execute()
        return [document.callback_url(ref, table) for ref in refs]

    def result_details(self, app_id: str, device_id: str, command_ids: list[str]) -> list:
        """The devices' `resultDetail` of finished commands (None where there is none)."""
        lives = self.redis.hmget(keys.lifecycle(app_id, device_id), command_ids)
        return [
            orjson.loads(life).get("result", {}).get("resultDetail") if life else None
            for life in lives
        ]


class NotificationStore:
    """Notification records (state and attempt history), the retry schedule, receiver breakers."""

    def __init__(self, redis: Redis, scripts: Scripts, buckets: int) -> None:
        self.redis = redis
        self.scripts = scripts
        self.buckets = buckets

    def _by_bucket(self, members: dict[str, int]) -> dict[int, dict[str, int]]:
        """Index members (`appId/deviceId/...`) grouped by their device's bucket."""
        grouped: dict[int, dict[str, int]] = defaultdict(dict)
        for member, score in members.items():
            grouped[keys.bucket(member.split("/", 2)[1], self.buckets)][member] = score
        return grouped

    def _zadd(self, index: Callable[[int], str], members: dict[str, int], **flags) -> None:
        """ZADD each bucket's members to its own key (one command per bucket, one round trip:
        the buckets are different slots, so not one transaction)."""
        pipe = self.redis.pipeline(transaction=False)
        for number, part in self._by_bucket(members).items():
            pipe.zadd(index(number), part, **flags)
        pipe.execute()

    def _zrem(self, index: Callable[[int], str], refs: list[tuple[str, str, str]]) -> None:
        members = {"/".join(ref): 0 for ref in refs}
        pipe = self.redis.pipeline(transaction=False)
        for number, part in self._by_bucket(members).items():
            pipe.zrem(index(number), *part)
        pipe.execute()

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
        self._zadd(keys.notifications_due, members, nx=True)
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

    def list_settled(self, records: list[dict], now: int) -> None:
        """Put records that settled for good (delivered, stopped) on their devices' notified
        lists, one entry per device, for retention (NOTIFICATION_RETENTION)."""
        by_device: dict[tuple[str, str], list[str]] = defaultdict(list)
        for record in records:
            by_device[record["appId"], record["deviceId"]].append(record["id"])
        if not by_device:
            return
        pipe = self.redis.pipeline(transaction=False)
        for (app_id, device_id), ids in by_device.items():
            pipe.rpush(keys.notified(app_id, device_id), f"{now} {','.join(ids)}")
        pipe.execute()

    def load(self, app_id: str, device_id: str, ids: list[str]) -> list[dict | None]:
        raw = self.redis.hmget(keys.notifications(app_id, device_id), ids) if ids else []
        return [orjson.loads(r) if r else None for r in raw]

    def load_by_device(
        self, wanted: dict[tuple[str, str], list[str]]
    ) -> dict[tuple[str, str, str], dict]:
        """Records of several devices (ids per appId, deviceId) in one round trip, keyed by
        (appId, deviceId, id); unknown ones are left out."""
        pipe = self.redis.pipeline(transaction=False)
        for (app_id, device_id), ids in wanted.items():
            pipe.hmget(keys.notifications(app_id, device_id), ids)
        found = {}
        for ((app_id, device_id), ids), raw in zip(wanted.items(), pipe.execute(), strict=True):
            for notification_id, record in zip(ids, raw, strict=True):
                if record:
                    found[app_id, device_id, notification_id] = orjson.loads(record)
        return found

    def settle(self, refs: list[tuple[str, str, str]]) -> None:
        """Take notifications that need no further attempt off the due set."""
        if refs:
            self._zrem(keys.notifications_due, refs)

    def schedule(self, records: list[dict], due_ms: dict[str, int]) -> None:
        """Put notifications on the retry schedule at their due times (ms by id)."""
        members = {_due_member(r): due_ms[r["id"]] for r in records}
        if members:
            self._zadd(keys.notifications_due, members)

    def mark_failed(self, records: list[dict], now: int) -> None:
        if records:
            self._zadd(keys.notifications_failed, {_due_member(r): now for r in records})

    def failed_since(self, since_ms: int, limit: int) -> list[tuple[str, str, str]]:
        """Up to `limit` notifications given up since `since_ms`, bucket after bucket."""
        found: list[tuple[str, str, str]] = []
        for number in range(self.buckets):
            if len(found) >= limit:
                break
            index = keys.notifications_failed(number)
            members = self.redis.zrangebyscore(index, since_ms, "+inf", 0, limit - len(found))
            found += [tuple(m.split("/", 2)) for m in members]
        return found

    def unmark_failed(self, refs: list[tuple[str, str, str]]) -> None:
        if refs:
            self._zrem(keys.notifications_failed, refs)

    def claim_due(
        self, bucket: int, now: int, limit: int, lease_until: int
    ) -> list[tuple[str, str, str]]:
        """Claim due notifications of one bucket, each by exactly one caller, leased until
        `lease_until`."""
        claimed = self.scripts.claim_due(
            keys=[keys.notifications_due(bucket)], args=[now, limit, lease_until]
        )
        return [tuple(m.split("/", 2)) for m in claimed]

    def breakers(self, origins: set[str]) -> dict[str, Breaker]:
        """The breakers of these receivers (`scheme://host:port`), in one round trip."""
        ordered = sorted(origins)
        pipe = self.redis.pipeline(transaction=False)
        for origin in ordered:
            pipe.hmget(keys.receiver(origin), ["failures", "openUntil"])
        return {
            origin: Breaker(int(failures or 0), int(until or 0))
            for origin, (failures, until) in zip(ordered, pipe.execute(), strict=True)
        }

    def breaker(self, origin: str) -> Breaker:
        """One receiver's breaker."""
        return self.breakers({origin})[origin]

    def save_breakers(self, breakers: dict[str, Breaker]) -> None:
        """Persist breakers (a closed one with no failures is deleted; kept a day at most)."""
        pipe = self.redis.pipeline(transaction=False)
        for origin, breaker in breakers.items():
            key = keys.receiver(origin)
            if breaker.failures == 0:
                pipe.delete(key)
                continue
            pipe.hset(key, mapping={"failures": breaker.failures, "openUntil": breaker.open_until})
            pipe.expire(key, 86_400)
        pipe.execute()


def _due_member(record: dict) -> str:
    return f"{record['appId']}/{record['deviceId']}/{record['id']}"
