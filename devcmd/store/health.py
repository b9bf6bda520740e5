"""Worker heartbeats and the cheap whole-service counts (index sizes) read at scrape time."""

from __future__ import annotations

from redis import Redis

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
