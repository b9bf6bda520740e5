"""Applications, their grants, and access/refresh tokens (stored as SHA-256 digests with a TTL)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from redis import Redis, RedisError
from redis.exceptions import NoScriptError

from devcmd import faults
from devcmd.clock import now_ms
from devcmd.store import keys
from devcmd.store.reads import Read
from devcmd.store.scripts import Scripts, pipelined, queue

RATE_LIMIT_FIELD = "rateLimitPerMinute"
# Bumped on every token revocation of the application: a process that cached a token's owner
# checks it on each call (in the admission script), so a revoked token stops working at once.
VERSION_FIELD = "authVersion"
TOKEN_CACHE_SECONDS = 30.0
TOKEN_CACHE_SIZE = 10_000
T = TypeVar("T")


@dataclass(frozen=True)
class Admission:
    """What `admit_call.lua` answered (its header explains the codes)."""

    ADMITTED, NO_APP, FROZEN, STALE, OVER_BUDGET = range(5)

    code: int
    version: str
    limit: int
    weighted_milli: int  # calls in the sliding minute, this one included, in thousandths
    into_ms: int  # how far into the current minute


@dataclass(frozen=True)
class CachedToken:
    """An access token's owner as this process last checked it, against `version`."""

    app_id: str
    version: str
    valid_until: float  # time.monotonic(): the token's expiry or the cache's, the sooner


def _admission(reply: list) -> Admission:
    code, version, limit, weighted, into = reply
    return Admission(int(code), str(version), int(limit), int(weighted), int(into))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AppStore:
    """Application records: `appId`, `name`, hashed `secret`, `webhookSecret`, `frozen`."""

    def __init__(self, redis: Redis, scripts: Scripts | None = None) -> None:
        self.redis = redis
        self.scripts = scripts or Scripts(redis)
        self._pipelined = pipelined(redis)

    def create(self, app_id: str, record: dict[str, str]) -> bool:
        """Store a new application; False if the appId is taken."""
        if not self.redis.hsetnx(keys.app(app_id), "appId", app_id):
            return False
        # Refused (e.g. out of memory) after the claim: drop the claim, or the appId would stay
        # taken by a record without a secret.
        with faults.undone_if_refused(partial(self.redis.delete, keys.app(app_id))):
            # Two slots, so two steps: the record, then the list. A crash in between leaves an
            # application that works but is not listed; no caller got its credentials (the
            # create did not answer), so nothing it was told is wrong.
            self.redis.hset(keys.app(app_id), mapping=record)
            self.redis.sadd(keys.apps(), app_id)
        return True

    def get(self, app_id: str) -> dict[str, str] | None:
        """The live application, or None if unknown or deleted."""
        record = self.redis.hgetall(keys.app(app_id))
        return record if record.get("secretHash") and record.get("deleted") != "1" else None

    def signing_record(self, app_id: str) -> dict[str, str] | None:
        """The record with the webhook secrets, live or deleted: callbacks of commands that a
        deletion cancelled are still signed."""
        record = self.redis.hgetall(keys.app(app_id))
        return record if record.get("webhookSecret") else None

    def tombstone(self, app_id: str, now: int) -> None:
        """Mark the application deleted: its secret hash goes, its appId stays taken for good
        (a new application under the same id would inherit its records), and it leaves the list.
        """
        # Not one transaction (the list is in another slot). The secret goes first: from then
        # on the application can no longer log in, whatever step a crash stops at.
        pipe = self.redis.pipeline(transaction=False)
        pipe.hdel(keys.app(app_id), "secretHash")
        pipe.hset(keys.app(app_id), mapping={"deleted": "1", "deleteTime": str(now)})
        pipe.srem(keys.apps(), app_id)
        pipe.sadd(keys.purging(), app_id)  # its records go after PURGE_DELAY (domain/purge.py)
        pipe.execute()

    def admit(self, app_id: str, now: int, default_limit: int, version: str) -> Admission:
        """Check the application's record and count one call against its budget, atomically;
        `version` is the authVersion the caller's token was checked against ('' = any).

        While the store refuses writes (out of memory) the call is checked but not counted, so
        reads go on; the writes the call itself makes are refused as they come (503)."""
        script_keys = [keys.app(app_id), keys.budget(app_id)]
        try:
            reply = self.scripts.admit_call(keys=script_keys, args=[now, default_limit, version])
        except RedisError as exc:
            if faults.refusal(exc) != "OOM":
                raise
            reply = self.scripts.admit_call(keys=script_keys, args=[now, 0, version, "0"])
        return _admission(reply)

    def admit_reading(
        self, app_id: str, now: int, default_limit: int, version: str, read: Read[T]
    ) -> tuple[Admission, T | None]:
        """`admit`, and on one server `read` in the same round trip (sent after the script);
        the read's answer is None on a cluster, where the caller reads in a step of its own.
        The answer is read whatever admission says: use it only for an admitted call."""
        if not self._pipelined:
            return self.admit(app_id, now, default_limit, version), None
        script_keys = [keys.app(app_id), keys.budget(app_id)]
        pipe = self.redis.pipeline(transaction=False)
        queue(pipe, self.scripts.admit_call, script_keys, [now, default_limit, version])
        read.queue(pipe)
        first, *replies = pipe.execute(raise_on_error=False)
        if not isinstance(first, Exception):
            admission = _admission(first)
        elif isinstance(first, NoScriptError) or faults.refusal(first) == "OOM":
            # Rare (a restarted server, a full one): `admit` loads the script, or checks the
            # record without counting; the read's replies stand (reads are not refused).
            admission = self.admit(app_id, now, default_limit, version)
        else:
            raise first
        return admission, read.take(replies)

    def update(self, app_id: str, fields: dict[str, str]) -> None:
        self.redis.hset(keys.app(app_id), mapping=fields)

    def set_rate_limit(self, app_id: str, per_minute: int | None) -> None:
        """Set (or with None, clear) the application's own calls per minute."""
        if per_minute is None:
            self.redis.hdel(keys.app(app_id), RATE_LIMIT_FIELD)
        else:
            self.redis.hset(keys.app(app_id), RATE_LIMIT_FIELD, per_minute)

    def all_ids(self) -> list[str]:
        return sorted(self.redis.smembers(keys.apps()))

    def grant(self, owner: str, grantee: str) -> None:
        self.redis.sadd(keys.grants(owner), grantee)

    def is_granted(self, owner: str, grantee: str) -> bool:
        return bool(self.redis.sismember(keys.grants(owner), grantee))

    def drop_grants(self, app_id: str) -> None:
        """Remove every grant the application gave or received."""
        pipe = self.redis.pipeline(transaction=False)  # one slot per owner
        pipe.delete(keys.grants(app_id))
        for owner in self.all_ids():
            pipe.srem(keys.grants(owner), app_id)
        pipe.execute()


class TokenStore:
    """Opaque bearer tokens: only their digests are kept, each expiring with its TTL, and
    indexed per application (`keys.app_tokens`) so they can all be revoked at once."""

    KINDS = {"access": keys.access_token, "refresh": keys.refresh_token}

    def __init__(self, redis: Redis, scripts: Scripts) -> None:
        self.redis = redis
        self.scripts = scripts
        self._cache: dict[str, CachedToken] = {}

    def issue(self, app_id: str, access: tuple[str, int], refresh: tuple[str, int]) -> None:
        """Store an access and a refresh token, each `(token, ttl seconds)`, and index them.

        Index entries of expired tokens are pruned here; the index itself lives as long as the
        longest token just issued.
        """
        now, index = now_ms(), keys.app_tokens(app_id)
        hashed = {
            kind: digest(token) for kind, (token, _) in (("access", access), ("refresh", refresh))
        }
        # Each token key has its own slot, so the index (the application's slot) is written
        # first, in its own transaction, then the tokens: a crash in between leaves index
        # entries of tokens that never existed, which `revoke_all` deletes harmlessly; a live
        # token missing from the index (which revocation could not find) cannot happen.
        pipe = self.redis.pipeline(transaction=True)
        for kind, (_, ttl) in (("access", access), ("refresh", refresh)):
            pipe.zadd(index, {f"{kind}:{hashed[kind]}": now + ttl * 1000})
        pipe.zremrangebyscore(index, "-inf", now)
        pipe.expire(index, max(access[1], refresh[1]))
        pipe.execute()
        pipe = self.redis.pipeline(transaction=False)
        for kind, (_, ttl) in (("access", access), ("refresh", refresh)):
            pipe.set(self.KINDS[kind](hashed[kind]), app_id, ex=ttl)
        pipe.execute()

    def access_app(self, token: str) -> str | None:
        return self.redis.get(keys.access_token(digest(token)))

    def cached_owner(self, token: str) -> CachedToken | None:
        """This process's last check of an access token, if still within its lifetime."""
        entry = self._cache.get(token)
        if entry is not None and entry.valid_until <= time.monotonic():
            self._cache.pop(token, None)
            return None
        return entry

    def look_up(self, token: str, app_id: str) -> CachedToken | None:
        """Check in Redis that `token` is a live access token of `app_id` (None if not), and
        remember it with the application's authVersion read in the same round trip: read after
        the token, so a revocation between the two shows as a newer version at admission."""
        key = keys.access_token(digest(token))
        pipe = self.redis.pipeline(transaction=False)  # the token and the app: two slots
        pipe.get(key)
        pipe.pttl(key)
        pipe.hget(keys.app(app_id), VERSION_FIELD)
        owner, ttl_ms, version = pipe.execute()
        if owner != app_id or ttl_ms is None or ttl_ms <= 0:
            self.forget(token)
            return None
        lifetime = min(ttl_ms / 1000, TOKEN_CACHE_SECONDS)
        entry = CachedToken(app_id, version or "0", time.monotonic() + lifetime)
        if len(self._cache) >= TOKEN_CACHE_SIZE:
            self._cache.clear()  # crude but bounded; a miss costs one round trip
        self._cache[token] = entry
        return entry

    def forget(self, token: str) -> None:
        self._cache.pop(token, None)

    def drop_access(self, token: str, app_id: str | None = None) -> str | None:
        """Revoke an access token (only if it is `app_id`'s, when given); returns its owner,
        or None if it was not live (nothing changed)."""
        return self._take("access", token, app_id)

    def take_refresh(self, token: str, app_id: str) -> bool:
        """Consume `app_id`'s refresh token atomically: each one works once, and another
        application presenting it consumes nothing."""
        return self._take("refresh", token, app_id) is not None

    def _take(self, kind: str, token: str, app_id: str | None) -> str | None:
        hashed = digest(token)
        key = self.KINDS[kind](hashed)
        if app_id is None:
            owner = self.redis.getdel(key)
        else:
            owner = app_id if self.scripts.take_token(keys=[key], args=[app_id]) else None
        if owner is not None:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrem(keys.app_tokens(owner), f"{kind}:{hashed}")
            pipe.hincrby(keys.app(owner), VERSION_FIELD, 1)  # after the delete: see look_up
            pipe.execute()
        return owner

    def revoke_all(self, app_id: str) -> int:
        """Delete every live token issued to the application; returns how many there were."""
        index = keys.app_tokens(app_id)
        members = self.redis.zrange(index, 0, -1)
        pipe = self.redis.pipeline(transaction=False)  # token keys live in other slots
        for member in members:
            kind, _, hashed = member.partition(":")
            pipe.delete(self.KINDS[kind](hashed))
        pipe.delete(index)
        pipe.hincrby(keys.app(app_id), VERSION_FIELD, 1)  # after the deletes: see look_up
        return sum(pipe.execute()[:-2])
