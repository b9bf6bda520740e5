"""The per-device notification outbox: Lua transitions append to it, senders drain it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import orjson
from redis import Redis

from devcmd.store import keys


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
        pipe = self.redis.pipeline()
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
