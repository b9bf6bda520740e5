"""Revocation task records: opening (scope + fence), batch sweeps, reads and the active index."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from redis import Redis
from redis.exceptions import NoScriptError

from devcmd import errors, faults
from devcmd.store import document as documents
from devcmd.store import keys, scripts
from devcmd.store.reads import Read
from devcmd.store.replication import Replicas
from devcmd.store.scripts import Scripts, slot_client

TERMINAL = frozenset({"SUCCESS", "PART_SUCCESS", "FAILED"})
TASK_DEVICE_CACHE_SIZE = 100_000


@dataclass(frozen=True)
class Opened:
    total: int
    scoped: list[dict]
    created: bool
    # The task's record as the script left it, when it was read in the same round trip.
    record: dict | None = None


@dataclass(frozen=True)
class Batch:
    cancelled_now: int
    status: str
    cancelled: int
    total: int
    done: bool
    ids: tuple[str, ...] = ()
    finished_now: bool = False  # this batch ended the task (exactly one batch per task does)


def active_member(app_id: str, device_id: str, task_id: str) -> str:
    return f"{app_id}/{device_id}/{task_id}"


class RevocationStore:
    def __init__(
        self,
        redis: Redis,
        scripts: Scripts,
        buckets: int,
        replicas: Replicas | None = None,
    ) -> None:
        self.redis = redis
        self.scripts = scripts
        self.buckets = buckets
        # REDIS_MIN_REPLICAS_ACK: a task's fence waits for them in its own pipeline.
        self.replicas = replicas or Replicas(redis, 0, 0)
        # (appId, taskId) -> deviceId of tasks this process opened or looked up: a task's
        # device never changes, so a poll by taskId skips that lookup.
        self._task_devices: dict[tuple[str, str], str] = {}

    def _active(self, device_id: str) -> str:
        """The active-task index bucket of a device."""
        return keys.active_tasks(keys.bucket(device_id, self.buckets))

    def open(
        self,
        app_id: str,
        device_id: str,
        task_id: str,
        now: int,
        cap: int,
        *,
        internal: bool = False,
        listed: bool = True,
        limit: int = 0,
    ) -> Opened:
        """Open a task atomically. Indexes are written first.

        `internal` marks the device deleted in the same step (and keeps the task out of the
        application's task index); `listed=False` keeps it out of every task query (a
        synchronous cancel);
        `limit` > 0 refuses a scope larger than that. Raises DeviceNotFound or ScopeTooLarge.
        """
        script_keys = self._open_keys(app_id, device_id, task_id)
        args = [task_id, now, cap, app_id, device_id, "1" if internal else "0", limit]
        args.append("0" if listed else "1")
        indexed = listed and not internal
        steps = (app_id, device_id, task_id, now, indexed, script_keys, args)
        if scripts.pipelined(self.redis):
            reply, record = self._open_at_once(*steps)
        else:
            reply, record = self._open_in_steps(*steps), None
        if reply[0] < 0:
            self._unindex(app_id, device_id, task_id)
            if reply[0] == -2:
                raise errors.ScopeTooLarge(reply[1], limit)
            raise errors.DeviceNotFound()
        if indexed:
            self._remember(app_id, task_id, device_id)
        listed_ = reply[2:]
        fields = (listed_[0::4], listed_[1::4], listed_[2::4], listed_[3::4])
        scoped = [
            documents.decode(doc, app_id, device_id, command_id, url or None, int(ms))
            | {"status": "PENDING"}
            for command_id, doc, url, ms in zip(*fields, strict=True)
        ]
        return Opened(total=reply[1], scoped=scoped, created=reply[0] == 1, record=record)

    @staticmethod
    def _open_keys(app_id: str, device_id: str, task_id: str) -> list[str]:
        """The KEYS of `open_task.lua`."""
        return [
            keys.device(app_id, device_id),
            keys.pending(app_id, device_id),
            keys.task(app_id, device_id, task_id),
            keys.device_tasks(app_id, device_id),
            keys.documents(app_id, device_id),
            keys.callbacks(app_id, device_id),
            keys.device_commands(app_id, device_id),
            keys.callback_urls(app_id, device_id),
        ]

    def _queue_indexes(
        self, pipe, app_id: str, device_id: str, task_id: str, now: int, indexed: bool
    ) -> None:
        """The active index (so a crash after the script still leaves the task found by the
        stalled-task job and finished), then the application's task index."""
        pipe.zadd(self._active(device_id), {active_member(app_id, device_id, task_id): now})
        if indexed:
            pipe.zadd(keys.app_tasks(app_id), {task_id: now})
            pipe.hset(keys.app_task_devices(app_id), task_id, device_id)

    def _open_at_once(
        self,
        app_id: str,
        device_id: str,
        task_id: str,
        now: int,
        indexed: bool,
        script_keys: list[str],
        args: list,
    ) -> tuple[list, dict | None]:
        """One server: the steps of `_open_in_steps` in one pipeline, which the server runs in
        order, and the task's record read right after the script: (the script's reply, the
        record, or None when the script had to run again alone)."""
        pipe = self.redis.pipeline(transaction=False)
        self._queue_indexes(pipe, app_id, device_id, task_id, now, indexed)
        scripts.queue(pipe, self.scripts.open_task, script_keys, args)
        if self.replicas.required > 0:  # WAIT covers this connection's writes, the fence too
            self.replicas.queue_wait(pipe)
        pipe.hgetall(keys.task(app_id, device_id, task_id))
        replies = pipe.execute(raise_on_error=False)
        index_replies, answer = replies[: 3 if indexed else 1], replies[3 if indexed else 1]
        if isinstance(answer, NoScriptError):  # the server lost its scripts: run it again alone
            with faults.undone_if_refused(partial(self._unindex, app_id, device_id, task_id)):
                return self._open_task_durably(script_keys, args), None
        if isinstance(answer, Exception):
            if faults.refusal(answer) and index_replies[0] == 1:  # refused: it ran none of it
                self._unindex(app_id, device_id, task_id)
            raise answer
        if self.replicas.required > 0:
            self.replicas.check(replies[-2])
        if any(isinstance(reply, Exception) for reply in index_replies) and answer[0] >= 0:
            # An index write refused while the script ran (memory freed in between): write the
            # indexes again before anyone is told, so the stalled-task job can find the task.
            again = self.redis.pipeline(transaction=False)
            self._queue_indexes(again, app_id, device_id, task_id, now, indexed)
            again.execute()
        record = replies[-1]
        return answer, record if isinstance(record, dict) and record else None

    def _open_in_steps(
        self,
        app_id: str,
        device_id: str,
        task_id: str,
        now: int,
        indexed: bool,
        script_keys: list[str],
        args: list,
    ) -> list:
        """A cluster: three slots, in this order: the active index, the application's task index
        (one transaction), then the script. A crash before the script leaves index entries with
        no task behind them: readers skip them and the stalled job drops the active one."""
        self.redis.zadd(self._active(device_id), {active_member(app_id, device_id, task_id): now})
        if indexed:
            pipe = self.redis.pipeline(transaction=True)
            pipe.zadd(keys.app_tasks(app_id), {task_id: now})
            pipe.hset(keys.app_task_devices(app_id), task_id, device_id)
            pipe.execute()
        with faults.undone_if_refused(partial(self._unindex, app_id, device_id, task_id)):
            return self._open_task_durably(script_keys, args)

    def _open_task_durably(self, script_keys: list[str], args: list) -> list:
        """Run `open_task.lua`; with REDIS_MIN_REPLICAS_ACK > 0, also WAIT until that many
        replicas of the device's master have it (the fence included) before anyone is told.

        WAIT counts what replicas acknowledged of the writes of its own connection, so the
        script and the WAIT go down one connection to the node that owns the device's slot, in
        one pipeline. Without it a master that dies right after the 201 may take the fence
        with it: its promoted replica would then hand the task's commands to the device.
        Raises NotReplicated (a RedisError) when fewer replicas answered in time.
        """
        if self.replicas.required <= 0:
            return self.scripts.open_task(keys=script_keys, args=args)
        pipe = slot_client(self.redis, script_keys[0]).pipeline(transaction=False)
        self.scripts.open_task(keys=script_keys, args=args, client=pipe)
        self.replicas.queue_wait(pipe)
        reply, acked = pipe.execute()
        self.replicas.check(acked)
        return reply

    def _unindex(self, app_id: str, device_id: str, task_id: str) -> None:
        # The application's index first, then the active index: the reverse of `open`, so a
        # crash in between leaves at most an active entry without a task, which the
        # stalled-task job drops. No MULTI (both keys in the application's slot): a MULTI is
        # refused when the store is full, and this undo must still run then.
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrem(keys.app_tasks(app_id), task_id)
        pipe.hdel(keys.app_task_devices(app_id), task_id)
        pipe.execute()
        self.redis.zrem(self._active(device_id), active_member(app_id, device_id, task_id))

    def sweep_batch(
        self, app_id: str, device_id: str, task_id: str, now: int, size: int, *, with_ids=False
    ) -> Batch:
        """Cancel the next `size` commands of the task's scope in one atomic step.

        `with_ids` also returns the ids cancelled (opt-in: the worker's sweep does not need
        them). Raises TaskNotFound.
        """
        reply = self.scripts.sweep_batch(
            keys=[
                keys.task(app_id, device_id, task_id),
                keys.pending(app_id, device_id),
                keys.statuses(app_id, device_id),
                keys.outbox(app_id, device_id),
                keys.expiry(app_id, device_id),
                keys.status_debt(app_id, device_id),
                keys.finished(app_id, device_id),
                keys.finished_tasks(app_id, device_id),
            ],
            args=[now, size, "1" if with_ids else "0"],
        )
        if reply[0] == -1:
            self.redis.zrem(self._active(device_id), active_member(app_id, device_id, task_id))
            raise errors.TaskNotFound()
        state, cancelled_now, status, cancelled, total, *ids = reply
        done = state != 1
        member = active_member(app_id, device_id, task_id)
        if done:
            self.redis.zrem(self._active(device_id), member)
        else:
            self.redis.zadd(self._active(device_id), {member: now})
        return Batch(cancelled_now, status, cancelled, total, done, tuple(ids), state == 2)

    def device_of(self, app_id: str, task_id: str) -> str | None:
        """The device of one of the application's tasks (remembered by this process once
        known: it never changes; a task removed since is then simply not found by `get`)."""
        found = self._task_devices.get((app_id, task_id))
        if found is None:
            found = self.redis.hget(keys.app_task_devices(app_id), task_id)
            if found is not None:
                self._remember(app_id, task_id, found)
        return found

    def _remember(self, app_id: str, task_id: str, device_id: str) -> None:
        if len(self._task_devices) >= TASK_DEVICE_CACHE_SIZE:
            self._task_devices.clear()  # bounded; a miss costs one round trip
        self._task_devices[app_id, task_id] = device_id

    def get_read(self, app_id: str, task_id: str) -> Read[dict[str, str]] | None:
        """`get` of a task whose device this process knows, as a `Read` to send along with
        another step (its answer is {} for a task not found); None when the device is not
        known here (the caller then looks it up)."""
        device_id = self._task_devices.get((app_id, task_id))
        if device_id is None:
            return None
        return Read((("hgetall", keys.task(app_id, device_id, task_id)),), _first)

    def get(self, app_id: str, device_id: str, task_id: str) -> dict[str, str] | None:
        return self.redis.hgetall(keys.task(app_id, device_id, task_id)) or None

    def load(self, app_id: str, pairs: list[tuple[str, str]]) -> list[dict]:
        pipe = self.redis.pipeline(transaction=False)
        for device_id, task_id in pairs:
            pipe.hgetall(keys.task(app_id, device_id, task_id))
        return [record for record in pipe.execute() if record]

    def ids_between(self, app_id: str, device_id: str | None, start: int, end: int) -> list[tuple]:
        """(deviceId, taskId) of tasks created in [start, end], newest first."""
        if device_id:
            ids = self.redis.zrevrangebyscore(keys.device_tasks(app_id, device_id), end, start)
            return [(device_id, task_id) for task_id in ids]
        ids = self.redis.zrevrangebyscore(keys.app_tasks(app_id), end, start)
        devices = self.redis.hmget(keys.app_task_devices(app_id), ids) if ids else []
        return [(dev, tid) for dev, tid in zip(devices, ids, strict=True) if dev]

    def stalled(
        self, bucket: int, older_than_ms: int, limit: int = 500
    ) -> list[tuple[str, str, str]]:
        """Unfinished tasks of one bucket whose last progress is older than the given time."""
        members = self.redis.zrangebyscore(
            keys.active_tasks(bucket), 0, older_than_ms, start=0, num=limit
        )
        return [tuple(m.split("/", 2)) for m in members]

    def touch(self, app_id: str, device_id: str, task_id: str, now: int) -> None:
        self.redis.zadd(self._active(device_id), {active_member(app_id, device_id, task_id): now})


def _first(replies):
    return replies[0]
