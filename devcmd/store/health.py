"""Worker heartbeats and the cheap whole-service counts (index sizes) read at scrape time."""

from __future__ import annotations

from redis import Redis, ResponseError

from devcmd import faults
from devcmd.store import keys


class HealthStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def beat(self, hostname: str, now: int) -> None:
        """Record that the worker `hostname` is alive at `now` (ms)."""
        self.redis.zadd(keys.workers(), {hostname: now})

    def leave(self, hostname: str) -> None:
        self.redis.zrem(keys.workers(), hostname)

    def workers_since(self, since: int) -> int:
        """How many workers have beaten since `since` (ms)."""
        return self.redis.zcount(keys.workers(), since, "+inf")

    def backlog(self) -> dict[str, int]:
        """Sizes of the global indexes, each O(1) to read: unfinished revocation tasks,
        notifications waiting for an attempt or given up, device outboxes to drain and devices
        with a pending timer."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(keys.active_tasks())
        pipe.zcard(keys.notifications_due())
        pipe.zcard(keys.notifications_failed())
        pipe.scard(keys.dirty_outboxes())
        pipe.zcard(keys.timers())
        names = (
            "tasks_active",
            "notifications_due",
            "notifications_failed",
            "outboxes_dirty",
            "devices_with_timers",
        )
        return dict(zip(names, pipe.execute(), strict=True))

    def server_state(self) -> dict[str, int | str] | None:
        """What decides whether the server can take writes, in one round trip (INFO answers
        even while the server loads its data): `used_memory`, `maxmemory` (0: no limit),
        `loading` (1 while loading), `role` (`master`, or `slave` for a read-only replica).
        None where INFO is refused (an ACL user without it, a server that lacks it)."""
        pipe = self.redis.pipeline(transaction=False)
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
        }
