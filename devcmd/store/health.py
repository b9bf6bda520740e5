"""Worker heartbeats and the cheap whole-service counts (index sizes) read at scrape time."""

from __future__ import annotations

from redis import Redis, ResponseError

from devcmd import faults
from devcmd.store import keys


class HealthStore:
    def __init__(self, redis: Redis, buckets: int) -> None:
        self.redis = redis
        self.buckets = buckets

    def beat(self, hostname: str, now: int) -> None:
        """Record that the worker `hostname` is alive at `now` (ms)."""
        self.redis.zadd(keys.workers(), {hostname: now})

    def leave(self, hostname: str) -> None:
        self.redis.zrem(keys.workers(), hostname)

    def workers_since(self, since: int) -> int:
        """How many workers have beaten since `since` (ms)."""
        return self.redis.zcount(keys.workers(), since, "+inf")

    def backlog(self) -> dict[str, int]:
        """Sizes of the global indexes, summed over their buckets, each O(1) to read:
        unfinished revocation tasks, notifications waiting for an attempt or given up, device
        outboxes to drain and devices with a pending timer."""
        sizes = {
            "tasks_active": ("zcard", keys.active_tasks),
            "notifications_due": ("zcard", keys.notifications_due),
            "notifications_failed": ("zcard", keys.notifications_failed),
            "outboxes_dirty": ("scard", keys.dirty_outboxes),
            "devices_with_timers": ("zcard", keys.timers),
        }
        pipe = self.redis.pipeline(transaction=False)  # many slots: one round trip, no MULTI
        for command, index in sizes.values():
            for number in range(self.buckets):
                getattr(pipe, command)(index(number))
        replies = pipe.execute()
        return {
            name: sum(replies[i * self.buckets : (i + 1) * self.buckets])
            for i, name in enumerate(sizes)
        }

    def server_state(self, server: Redis | None = None) -> dict[str, int | str] | None:
        """What decides whether the server can take writes, in one round trip (INFO answers
        even while the server loads its data): `used_memory`, `maxmemory` (0: no limit),
        `loading` (1 while loading), `role` (`master`, or `slave` for a read-only replica),
        `replicas` (replicas connected to it now).
        `server` is one node of a cluster (INFO is per server); by default this store's one
        server. None where INFO is refused (an ACL user without it, a server that lacks it)."""
        pipe = (server or self.redis).pipeline(transaction=False)
        for section in ("memory", "persistence", "replication"):
            pipe.info(section)
        try:
            memory, persistence, replication = pipe.execute()
        except ResponseError as exc:
            if faults.refusal(exc):
                raise
            return None
        return {
            "used_memory": int(memory["used_memory"]),
            "maxmemory": int(memory.get("maxmemory", 0)),
            "loading": int(persistence.get("loading", 0)),
            "role": str(replication.get("role", "master")),
            "replicas": int(replication.get("connected_slaves", 0)),
        }
