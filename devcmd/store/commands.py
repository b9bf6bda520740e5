"""Command records: creation and single cancel through Lua, reads through pipelines."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import orjson
from redis import Redis

from devcmd import errors
from devcmd.store import keys
from devcmd.store.scripts import Scripts
from devcmd.store.southbound import TimerIndex


class CommandStore:
    def __init__(self, redis: Redis, scripts: Scripts, buckets: int) -> None:
        self.redis = redis
        self.scripts = scripts
        self.timers = TimerIndex(redis, buckets)

    def create(self, record: dict, due_ms: int, max_pending: int) -> bool:
        """Queue a command; False if a command with its id exists already (nothing changed).
        Raises DeviceNotFound, PendingLimitReached.

        Three slots, in this order: the application-level indexes (one transaction), the timer
        index, then the device's script. If the script then refuses, the indexes are removed;
        if the process dies in between, readers skip the dangling entry (no record behind it)
        and the timer tick finds nothing due on the device.
        """
        app_id, device_id, command_id = record["appId"], record["deviceId"], record["commandId"]
        now = record["creationTime"]
        self._index(app_id, device_id, command_id, now)
        self.timers.schedule(app_id, device_id, due_ms)
        script_keys = self.create_keys(app_id, device_id)
        document = orjson.dumps(record)
        args = [command_id, now, max_pending, record["callbackUrl"] or "", due_ms, document]
        code = self.scripts.create_command(keys=script_keys, args=args)[0]
        if code >= 0:
            self.timers.schedule(app_id, device_id, due_ms)
            return code == 1
        self._unindex(app_id, command_id)
        if code == -1:
            self.timers.forget_unknown(app_id, device_id)
            raise errors.DeviceNotFound()
        raise errors.PendingLimitReached()

    @staticmethod
    def create_keys(app_id: str, device_id: str) -> list[str]:
        """The KEYS of `create_command.lua` for one device."""
        return keys.for_device(
            app_id,
            device_id,
            keys.device,
            keys.pending,
            keys.statuses,
            keys.callbacks,
            keys.device_commands,
            keys.documents,
            keys.expiry,
        )

    def _index(self, app_id: str, device_id: str, command_id: str, now: int) -> None:
        pipe = self.redis.pipeline(transaction=True)  # both in the application's slot
        pipe.hset(keys.app_command_devices(app_id), command_id, device_id)
        # nx: a second attempt at the same command (Idempotency-Key) keeps its creation time.
        pipe.zadd(keys.app_commands(app_id), {command_id: now}, nx=True)
        pipe.execute()

    def _unindex(self, app_id: str, command_id: str) -> None:
        pipe = self.redis.pipeline(transaction=True)  # both in the application's slot
        pipe.hdel(keys.app_command_devices(app_id), command_id)
        pipe.zrem(keys.app_commands(app_id), command_id)
        pipe.execute()

    def status(self, app_id: str, device_id: str, command_id: str) -> str | None:
        return self.redis.hget(keys.statuses(app_id, device_id), command_id)

    def window(self, app_id: str, device_id: str, start: int, end: int) -> tuple[int, int]:
        """(rank of the newest, how many) of the device's commands created in [start, end],
        ranks counted newest first: a window read by rank costs O(log n) per chunk."""
        index = keys.device_commands(app_id, device_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcount(index, f"({end}", "+inf")
        pipe.zcount(index, start, end)
        newer, count = pipe.execute()
        return newer, count

    def ids_by_rank(self, app_id: str, device_id: str, first: int, last: int) -> list[str]:
        """The device's command ids from rank `first` to `last` (inclusive), newest first."""
        return self.redis.zrevrange(keys.device_commands(app_id, device_id), first, last)

    def statuses(self, app_id: str, device_id: str, ids: list[str]) -> list[str | None]:
        return self.redis.hmget(keys.statuses(app_id, device_id), ids) if ids else []

    def device_of(self, app_id: str, command_id: str) -> str | None:
        return self.redis.hget(keys.app_command_devices(app_id), command_id)

    def cancel(self, app_id: str, device_id: str, command_id: str, now: int) -> None:
        """Cancel one PENDING command. Raises CommandNotFound or CommandNotCancellable."""
        script_keys = keys.for_device(
            app_id,
            device_id,
            keys.statuses,
            keys.pending,
            keys.callbacks,
            keys.outbox,
        )
        code, *rest = self.scripts.cancel_command(keys=script_keys, args=[command_id, now])
        if code == -1:
            raise errors.CommandNotFound()
        if code == -2:
            raise errors.CommandNotCancellable(rest[0])

    def load(self, app_id: str, pairs: Iterable[tuple[str, str]]) -> list[dict]:
        """Read (deviceId, commandId) pairs, in order, with three HMGETs per device in one round
        trip; unknown ones are skipped."""
        by_device: dict[str, list[str]] = defaultdict(list)
        order = list(pairs)
        for device_id, command_id in order:
            by_device[device_id].append(command_id)
        pipe = self.redis.pipeline(transaction=False)
        for device_id, ids in by_device.items():
            pipe.hmget(keys.documents(app_id, device_id), ids)
            pipe.hmget(keys.statuses(app_id, device_id), ids)
            pipe.hmget(keys.lifecycle(app_id, device_id), ids)
        replies = iter(pipe.execute())
        found: dict[tuple[str, str], dict] = {}
        for device_id, ids in by_device.items():
            documents, states, lives = next(replies), next(replies), next(replies)
            for command_id, document, status, life in zip(
                ids, documents, states, lives, strict=True
            ):
                if document and status:
                    record = orjson.loads(document)
                    record["status"] = status
                    if life:
                        record.update(orjson.loads(life))
                    found[device_id, command_id] = record
        return [found[pair] for pair in order if pair in found]

    def page(
        self, app_id: str, device_id: str | None, start: int, end: int, offset: int, limit: int
    ) -> tuple[int, list[dict]]:
        """Commands created in [start, end], newest first: (total matching, one page)."""
        index = keys.device_commands(app_id, device_id) if device_id else keys.app_commands(app_id)
        total = self.redis.zcount(index, start, end)
        ids = self.redis.zrevrangebyscore(index, end, start, start=offset, num=limit)
        if device_id:
            return total, self.load(app_id, ((device_id, cid) for cid in ids))
        devices = self.redis.hmget(keys.app_command_devices(app_id), ids) if ids else []
        pairs = ((dev, cid) for dev, cid in zip(devices, ids, strict=True) if dev)
        return total, self.load(app_id, pairs)
