"""Device records, the per-application device index and unique names (nodeId, and EnOS's
assetId and productKey + deviceKey)."""

from __future__ import annotations

from redis import Redis

from devcmd import errors
from devcmd.store import keys
from devcmd.store.reads import Read
from devcmd.store.scripts import Scripts

TAKEN = {-1: "nodeId", -2: "assetId", -3: "productKey + deviceKey"}
OWNER_CACHE_SIZE = 100_000


class DeviceStore:
    def __init__(self, redis: Redis, scripts: Scripts) -> None:
        self.redis = redis
        self.scripts = scripts
        self._owners: dict[str, str] = {}
        self._accepted: dict[str, str] = {}  # deviceId -> psk digest it last authenticated with

    def create(self, app_id: str, device_id: str, record: dict) -> None:
        """Store a device after claiming its unique names in one atomic step.

        Raises NodeIdTaken, or IdentityTaken naming the EnOS attribute already in use.
        """
        dkey = ""
        if record.get("productKey"):
            dkey = keys.device_key_member(record["productKey"], record["deviceKey"])
        (code,) = self.scripts.register_device(
            keys=[keys.app_nodes(app_id), keys.app_assets(app_id), keys.app_device_keys(app_id)],
            args=[device_id, record["nodeId"], record.get("assetId") or "", dkey],
        )
        if code == -1:
            raise errors.NodeIdTaken()
        if code < 0:
            raise errors.IdentityTaken(TAKEN[code])
        # Three slots (device, owner, application), written in this order: the record, then the
        # owner (southbound login reads owner then record), then the application's device list.
        # A crash before the list leaves a device whose registration never answered, so no
        # caller knows its id; it is never listed (application deletion would skip it).
        self.redis.hset(keys.device(app_id, device_id), mapping=record)
        self.redis.set(keys.device_owner(device_id), app_id)
        self.redis.zadd(keys.app_devices(app_id), {device_id: int(record["createTime"])})

    def ids(self, app_id: str) -> list[str]:
        """The application's live devices, oldest first."""
        return self.redis.zrange(keys.app_devices(app_id), 0, -1)

    def owner(self, device_id: str) -> str | None:
        """The application a device belongs to (devices authenticate by their own id).

        Remembered per process: a deviceId is a fresh random id that never changes owner, and a
        deleted device is refused by its record, which is always read (by `get`, or by the
        fetch script that checks the device's credentials)."""
        found = self._owners.get(device_id)
        if found is None:
            found = self.redis.get(keys.device_owner(device_id))
            if found is not None:
                if len(self._owners) >= OWNER_CACHE_SIZE:
                    self._owners.clear()  # bounded; a miss costs one round trip
                self._owners[device_id] = found
        return found

    def accepted_psk(self, device_id: str) -> str | None:
        """The psk digest this process last saw the device authenticate with, if any: a hint
        that the next request with it will pass, never proof (the store checks it again)."""
        return self._accepted.get(device_id)

    def accept_psk(self, device_id: str, digest: str | None) -> None:
        """Remember (or with None, forget) the digest the device authenticated with."""
        if digest is None:
            self._accepted.pop(device_id, None)
            return
        if len(self._accepted) >= OWNER_CACHE_SIZE:
            self._accepted.clear()  # bounded; a miss costs one round trip
        self._accepted[device_id] = digest

    def get(self, app_id: str, device_id: str) -> dict[str, str] | None:
        """The live device, or None if unknown or deleted."""
        record = self.redis.hgetall(keys.device(app_id, device_id))
        if not record.get("nodeId") or record.get("deleted") == "1":
            return None
        return record

    def get_with_pending(self, app_id: str, device_id: str) -> tuple[dict[str, str] | None, int]:
        """The live device (None if unknown or deleted) and its pending count, in one round
        trip (query device is a hot read)."""
        return self.read_with_pending(app_id, device_id).run(self.redis)

    def read_with_pending(
        self, app_id: str, device_id: str
    ) -> Read[tuple[dict[str, str] | None, int]]:
        """`get_with_pending` as a `Read`, to send along with another step (one slot: the
        device's)."""
        commands = (
            ("hgetall", keys.device(app_id, device_id)),
            ("zcard", keys.pending(app_id, device_id)),
        )
        return Read(commands, _live_with_pending)

    def by_asset(self, app_id: str, asset_id: str) -> str | None:
        """The deviceId registered with this EnOS assetId."""
        return self.redis.hget(keys.app_assets(app_id), asset_id)

    def by_device_key(self, app_id: str, product_key: str, device_key: str) -> str | None:
        """The deviceId registered with this EnOS productKey + deviceKey."""
        member = keys.device_key_member(product_key, device_key)
        return self.redis.hget(keys.app_device_keys(app_id), member)

    def unindex(self, app_id: str, device_id: str, record: dict[str, str]) -> None:
        """Forget a deleted device in the application's indexes (its commands stay queryable)."""
        # The application's indexes are one slot and one transaction; the owner key is dropped
        # after them. Either order is safe: the device record says deleted already, so a
        # southbound login fails whether or not the owner key is still there.
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(keys.app_nodes(app_id), record["nodeId"])
        if record.get("assetId"):
            pipe.hdel(keys.app_assets(app_id), record["assetId"])
        if record.get("productKey"):
            member = keys.device_key_member(record["productKey"], record["deviceKey"])
            pipe.hdel(keys.app_device_keys(app_id), member)
        pipe.zrem(keys.app_devices(app_id), device_id)
        pipe.execute()
        self.redis.delete(keys.device_owner(device_id))


def _live_with_pending(replies) -> tuple[dict[str, str] | None, int]:
    """A device record and its pending count; (None, 0) unless the device is live."""
    record, pending = replies
    if not record.get("nodeId") or record.get("deleted") == "1":
        return None, 0
    return record, pending
