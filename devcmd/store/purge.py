"""Purge of deleted applications: find every key of one application, server by server, in
bounded resumable steps, and remove it with the entries that name it in the shared indexes.

An application's keys all carry its appId in their hash tag (`dc:{appId}:...` and
`dc:{appId:deviceId}:...`), besides its budget (`dc:limits:{appId}:northbound`), its devices'
owner keys (`dc:owner:{deviceId}`, holding the appId) and its tokens (revoked at deletion). Its
tombstone (`dc:{appId}:app`) stays: the appId is never reused; it also holds the purge's place
(`purgeCursors`, JSON server -> SCAN cursor or "done", and `purgeRemoved` in this pass).
"""

from __future__ import annotations

import re

import orjson
from redis import Redis
from redis.cluster import RedisCluster

from devcmd.store import keys

GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


class PurgeStore:
    def __init__(self, redis: Redis | RedisCluster, buckets: int) -> None:
        self.redis = redis
        self.buckets = buckets

    def mark(self, app_id: str) -> None:
        """Queue a deleted application for purging."""
        self.redis.sadd(keys.purging(), app_id)

    def unqueue(self, app_id: str) -> None:
        self.redis.srem(keys.purging(), app_id)

    def queued(self) -> list[str]:
        return sorted(self.redis.smembers(keys.purging()))

    def state(self, app_id: str) -> tuple[dict[str, str], dict[str, int | str]]:
        """(The tombstone record, the purge's cursors by server)."""
        record = self.redis.hgetall(keys.app(app_id))
        return record, orjson.loads(record.get("purgeCursors") or "{}")

    def save_state(self, app_id: str, cursors: dict, removed: int) -> None:
        self.redis.hset(
            keys.app(app_id),
            mapping={"purgeCursors": orjson.dumps(cursors), "purgeRemoved": removed},
        )

    def finish(self, app_id: str, now: int) -> None:
        """The purge found nothing left in a whole pass: record it and leave the queue."""
        self.redis.hdel(keys.app(app_id), "purgeCursors", "purgeRemoved")
        self.redis.hset(keys.app(app_id), "purgeTime", now)
        self.redis.srem(keys.purging(), app_id)

    def servers(self) -> dict[str, Redis]:
        """Every server holding data, by name: the one server, or each master of a cluster."""
        if not isinstance(self.redis, RedisCluster):
            return {"server": self.redis}
        return {n.name: self.redis.get_redis_connection(n) for n in self.redis.get_primaries()}

    def scan(self, server: Redis, app_id: str, cursor: int, count: int) -> tuple[int, list[str]]:
        """One SCAN step of `server` for the application's tagged keys (not its tombstone)."""
        escaped = GLOB_SPECIAL.sub(r"\\\1", app_id)
        cursor, found = server.scan(cursor, match=f"{keys.PREFIX}:{{{escaped}*", count=count)
        own = (f"{keys.PREFIX}:{{{app_id}}}:", f"{keys.PREFIX}:{{{app_id}:")
        keep = keys.app(app_id)
        return cursor, [k for k in found if k.startswith(own) and k != keep]

    def live_devices(self, app_id: str, count: int) -> list[str]:
        return self.redis.zrange(keys.app_devices(app_id), 0, count - 1)

    def remove(self, app_id: str, found: list[str], devices: set[str]) -> int:
        """Remove keys of the application and everything the shared indexes hold of them and of
        `devices`: bucket members, owner keys. Shared entries go before the keys that list them
        (a crash leaves keys a later pass finds again). Returns how many keys existed."""
        devices = devices | {_device_of(app_id, key) for key in found} - {None}
        self._unshare(app_id, found, devices)
        pipe = self.redis.pipeline(transaction=False)
        for key in found:
            pipe.unlink(key)
        pipe.unlink(keys.budget(app_id))
        return sum(pipe.execute()[:-1])

    def _unshare(self, app_id: str, found: list[str], devices: set[str]) -> None:
        notifications = [k for k in found if k.endswith("}:notifications")]
        names = self._hkeys(notifications)
        owners = self._owners(devices)
        pipe = self.redis.pipeline(transaction=False)
        for device_id in devices:
            number, member = keys.bucket(device_id, self.buckets), f"{app_id}/{device_id}"
            pipe.zrem(keys.timers(number), member)
            pipe.srem(keys.dirty_outboxes(number), member)
            pipe.zrem(keys.retention(number), member)
            if owners.get(device_id) == app_id:
                pipe.delete(keys.device_owner(device_id))
        for key in found:
            device_id, suffix = _device_of(app_id, key), key.rsplit("}:", 1)[1]
            if device_id and suffix.startswith("task:"):
                number = keys.bucket(device_id, self.buckets)
                pipe.zrem(keys.active_tasks(number), f"{app_id}/{device_id}/{suffix[5:]}")
        for key, ids in names.items():
            device_id = _device_of(app_id, key)
            members = [f"{app_id}/{device_id}/{nid}" for nid in ids]
            for first in range(0, len(members), 1000):
                number = keys.bucket(device_id, self.buckets)
                pipe.zrem(keys.notifications_due(number), *members[first : first + 1000])
                pipe.zrem(keys.notifications_failed(number), *members[first : first + 1000])
        pipe.execute()

    def _hkeys(self, hashes: list[str]) -> dict[str, list[str]]:
        pipe = self.redis.pipeline(transaction=False)
        for key in hashes:
            pipe.hkeys(key)
        return dict(zip(hashes, pipe.execute(), strict=True)) if hashes else {}

    def _owners(self, devices: set[str]) -> dict[str, str | None]:
        ordered = sorted(devices)
        pipe = self.redis.pipeline(transaction=False)
        for device_id in ordered:
            pipe.get(keys.device_owner(device_id))
        return dict(zip(ordered, pipe.execute(), strict=True)) if ordered else {}

    def forget_live(self, app_id: str, device_ids: list[str]) -> None:
        """Drop devices from the application's device list (after `remove` handled them)."""
        if device_ids:
            self.redis.zrem(keys.app_devices(app_id), *device_ids)


def _device_of(app_id: str, key: str) -> str | None:
    """The deviceId of a device key `dc:{appId:deviceId}:...` (None for an application key)."""
    prefix = f"{keys.PREFIX}:{{{app_id}:"
    if not key.startswith(prefix):
        return None
    return key[len(prefix) : key.index("}:", len(prefix))]
