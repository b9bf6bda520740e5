"""Idempotency-Key records: one hash per (calling application, key), claimed and settled by
Lua so that two attempts never both own a key."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis import Redis

from devcmd.store import keys
from devcmd.store.scripts import Scripts


@dataclass(frozen=True)
class Answer:
    """A recorded answer: replayed as it was."""

    status: int
    body: bytes
    location: str | None
    content_type: str


@dataclass(frozen=True)
class Claim:
    """What claiming a key gave: `seed` to run with, or `answer` to replay, or `busy_ms` to
    wait, or `mismatch`."""

    seed: str | None = None
    answer: Answer | None = None
    busy_ms: int = 0
    mismatch: bool = False


class IdempotencyStore:
    def __init__(self, redis: Redis, scripts: Scripts) -> None:
        self.redis = redis
        self.scripts = scripts

    @staticmethod
    def record_key(app_id: str, key: str) -> str:
        # The key is hashed: any printable key of up to 255 characters makes a short Redis key.
        return keys.idempotency(app_id, hashlib.sha256(key.encode()).hexdigest()[:40])

    def claim(
        self,
        app_id: str,
        key: str,
        fingerprint: str,
        seed: str,
        owner: str,
        now: int,
        lease_ms: int,
        ttl: int,
    ) -> Claim:
        reply = self.scripts.claim_idempotency(
            keys=[self.record_key(app_id, key)], args=[fingerprint, seed, owner, now, lease_ms, ttl]
        )
        kind = _text(reply[0])
        if kind == "run":
            return Claim(seed=_text(reply[1]))
        if kind == "done":
            status, body, location, content_type = reply[1:5]
            answer = Answer(int(status), _bytes(body), _text(location) or None, _text(content_type))
            return Claim(answer=answer)
        if kind == "busy":
            return Claim(busy_ms=int(reply[1]))
        return Claim(mismatch=True)

    def settle(self, app_id: str, key: str, owner: str, ttl: int, answer: Answer | None) -> bool:
        """Record `answer` (None: give the key up for a retry); False if no longer the owner."""
        args: list = [owner, "done" if answer else "open", ttl]
        if answer:
            args += [answer.status, answer.body, answer.location or "", answer.content_type]
        return bool(self.scripts.settle_idempotency(keys=[self.record_key(app_id, key)], args=args))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value
