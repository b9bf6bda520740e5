"""Device records, per-application device index and nodeId uniqueness."""

from __future__ import annotations

from redis import Redis

from devcmd.store import keys


class DeviceStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def create(self, app_id: str, device_id: str, node_id: str, record: dict) -> bool:
        """Store a device; False if the application already has a device with this nodeId."""
        if not self.redis.hsetnx(keys.app_nodes(app_id), node_id, device_id):
            return False
        pipe = self.redis.pipeline()
        pipe.hset(keys.device(app_id, device_id), mapping=record)
        pipe.zadd(keys.app_devices(app_id), {device_id: int(record["createTime"])})
        pipe.hset(keys.device_owners(), device_id, app_id)
        pipe.execute()
        return True

    def owner(self, device_id: str) -> str | None:
        """The application a device belongs to (devices authenticate by their own id)."""
        return self.redis.hget(keys.device_owners(), device_id)

    def get(self, app_id: str, device_id: str) -> dict[str, str] | None:
        """The live device, or None if unknown or deleted."""
        record = self.redis.hgetall(keys.device(app_id, device_id))
        if not record.get("nodeId") or record.get("deleted") == "1":
            return None
        return record

    def unindex(self, app_id: str, device_id: str, node_id: str) -> None:
        """Forget a deleted device in the application's indexes (its commands stay queryable)."""
        pipe = self.redis.pipeline()
        pipe.hdel(keys.app_nodes(app_id), node_id)
        pipe.zrem(keys.app_devices(app_id), device_id)
        pipe.hdel(keys.device_owners(), device_id)
        pipe.execute()

    def pending_count(self, app_id: str, device_id: str) -> int:
        return self.redis.zcard(keys.pending(app_id, device_id))
