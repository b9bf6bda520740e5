"""Applications, their grants, and access/refresh tokens (stored as SHA-256 digests with a TTL)."""

from __future__ import annotations

import hashlib

from redis import Redis

from devcmd.store import keys

RATE_LIMIT_FIELD = "rateLimitPerMinute"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AppStore:
    """Application records: `appId`, `name`, hashed `secret`, `webhookSecret`, `frozen`."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def create(self, app_id: str, record: dict[str, str]) -> bool:
        """Store a new application; False if the appId is taken."""
        if not self.redis.hsetnx(keys.app(app_id), "appId", app_id):
            return False
        pipe = self.redis.pipeline()
        pipe.hset(keys.app(app_id), mapping=record)
        pipe.sadd(keys.apps(), app_id)
        pipe.execute()
        return True

    def get(self, app_id: str) -> dict[str, str] | None:
        record = self.redis.hgetall(keys.app(app_id))
        return record if record.get("secretHash") else None

    def update(self, app_id: str, fields: dict[str, str]) -> None:
        self.redis.hset(keys.app(app_id), mapping=fields)

    def rate_limit(self, app_id: str) -> int | None:
        """The application's own calls per minute, if set (`devcmd apps set-limit`)."""
        value = self.redis.hget(keys.app(app_id), RATE_LIMIT_FIELD)
        return int(value) if value else None

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


class TokenStore:
    """Opaque bearer tokens: only their digests are kept, each expiring with its TTL."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def put_access(self, token: str, app_id: str, ttl: int) -> None:
        self.redis.set(keys.access_token(digest(token)), app_id, ex=ttl)

    def access_app(self, token: str) -> str | None:
        return self.redis.get(keys.access_token(digest(token)))

    def drop_access(self, token: str) -> bool:
        return bool(self.redis.delete(keys.access_token(digest(token))))

    def put_refresh(self, token: str, app_id: str, ttl: int) -> None:
        self.redis.set(keys.refresh_token(digest(token)), app_id, ex=ttl)

    def take_refresh(self, token: str) -> str | None:
        """Consume a refresh token atomically (GETDEL): each one works once."""
        return self.redis.getdel(keys.refresh_token(digest(token)))
