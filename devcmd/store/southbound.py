"""Device-facing transitions (fetch, ack, result) and the per-device timers, all through Lua."""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis
from redis.client import Pipeline

from devcmd import errors
from devcmd.store import keys, scripts
from devcmd.store.scripts import Scripts

# The status indexes finish_command.lua moves between, in its KEYS order.
FINISH_STATUSES = ("SENT", "DELIVERED", "SUCCESSFUL", "FAILED")


@dataclass(frozen=True)
class Tick:
    expired: int
    retransmitting: int
    timed_out: int
    next_due: int | None


class TimerIndex:
    """The global index of devices with timers, scored by their earliest due time, in
    `buckets` zsets (a device's entry is always in `keys.bucket(deviceId)`)."""

    def __init__(self, redis: Redis, buckets: int) -> None:
        self.redis = redis
        self.buckets = buckets

    def _key(self, device_id: str) -> str:
        return keys.timers(keys.bucket(device_id, self.buckets))

    def schedule(self, app_id: str, device_id: str, due_ms: int) -> None:
        """Make sure the device is looked at by `due_ms` (only ever moves its time earlier).

        Callers schedule before and after the Lua step that creates the timer: before, so a
        crash in between cannot lose it; after, so a tick racing with the step cannot hide it.
        """
        self.queue_schedule(self.redis, app_id, device_id, due_ms)

    def queue_schedule(
        self, pipe: Redis | Pipeline, app_id: str, device_id: str, due_ms: int
    ) -> None:
        """`schedule` as one command of `pipe` (a transaction that also creates the timer)."""
        pipe.zadd(self._key(device_id), {f"{app_id}/{device_id}": due_ms}, lt=True)

    def forget_unknown(self, app_id: str, device_id: str) -> None:
        """Drop what a refused create scheduled for a device the application never had, so ids
        a caller makes up do not pile up in the shared index. A deleted device keeps its entry:
        its SENT commands still need their ack timers. (No device can appear under an id
        that was never registered, so the check and the removal need not be one step.)"""
        if not self.redis.exists(keys.device(app_id, device_id)):
            self.redis.zrem(self._key(device_id), f"{app_id}/{device_id}")

    def due(self, bucket: int, now: int, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` devices of one bucket whose earliest timer is due by `now`."""
        members = self.redis.zrangebyscore(keys.timers(bucket), "-inf", now, start=0, num=limit)
        return [tuple(member.split("/", 1)) for member in members]

    def reschedule(self, app_id: str, device_id: str, next_due: int | None) -> None:
        member = f"{app_id}/{device_id}"
        if next_due is None:
            self.redis.zrem(self._key(device_id), member)
        else:
            self.redis.zadd(self._key(device_id), {member: next_due})


def _transition_keys(app_id: str, device_id: str, *statuses: str) -> list[str]:
    """The KEYS of ack_command.lua and finish_command.lua: the same six keys, the device's
    command index, the indexes of the statuses the script moves between, the pending queue."""
    return keys.for_device(
        app_id,
        device_id,
        keys.statuses,
        keys.lifecycle,
        keys.in_flight,
        keys.retransmit,
        keys.outbox,
        keys.callbacks,
        keys.device_commands,
        *map(keys.in_status, statuses),
        keys.pending,
    )


def _raise_for(reply: list) -> None:
    if reply[0] == -1:
        raise errors.CommandNotFound()
    if reply[0] == -2:
        raise errors.IllegalTransition(reply[1])


class SouthboundStore:
    def __init__(self, redis: Redis, scripts: Scripts, buckets: int) -> None:
        self.redis = redis
        self.scripts = scripts
        self.timers = TimerIndex(redis, buckets)

    def fetch(
        self,
        app_id: str,
        device_id: str,
        now: int,
        limit: int,
        ack_ms: int,
        psk_digest: str | None = None,
    ) -> tuple[bool, list[str]]:
        """Mark up to `limit` deliverable commands SENT; returns (outbox written, their ids).
        With `psk_digest` the script first checks it is the live device's, in the same step:
        DeviceAuthFailed (nothing changed) if not. Raises DeviceNotFound for a deleted device.
        """
        script, args = self.scripts.fetch_commands, [now, limit, ack_ms]
        if psk_digest is not None:
            args.append(psk_digest)
        script_keys = keys.for_device(
            app_id,
            device_id,
            keys.device,
            keys.pending,
            keys.statuses,
            keys.lifecycle,
            keys.in_flight,
            keys.retransmit,
            keys.expiry,
            keys.outbox,
            keys.callbacks,
            keys.device_commands,
            *map(keys.in_status, ("PENDING", "SENT", "EXPIRED")),
            keys.finished,
        )
        # The timer first (see TimerIndex.schedule); on one server with the script, in one
        # round trip (the server runs them in order).
        if scripts.pipelined(self.redis):
            pipe = self.redis.pipeline(transaction=False)
            self.timers.queue_schedule(pipe, app_id, device_id, now + ack_ms)
            scripts.queue(pipe, script, script_keys, args)
            scheduled, answer = pipe.execute(raise_on_error=False)
            reply = scripts.reply(answer, script, script_keys, args)
            if isinstance(scheduled, Exception):
                raise scheduled
        else:
            self.timers.schedule(app_id, device_id, now + ack_ms)
            reply = script(keys=script_keys, args=args)
        if reply[0] == -2:
            raise errors.DeviceAuthFailed()
        if reply[0] == -1:
            raise errors.DeviceNotFound()
        if len(reply) > 1:
            self.timers.schedule(app_id, device_id, now + ack_ms)
        return reply[0] == 1, reply[1:]

    def ack(self, app_id: str, device_id: str, command_id: str, now: int) -> bool:
        """SENT -> DELIVERED; False if it was already DELIVERED. Raises on anything else."""
        reply = self.scripts.ack_command(
            keys=_transition_keys(app_id, device_id, "SENT", "DELIVERED"), args=[command_id, now]
        )
        _raise_for(reply)
        return reply[0] == 1

    def finish(
        self, app_id: str, device_id: str, command_id: str, now: int, code: str, detail: str
    ) -> None:
        """SENT or DELIVERED -> SUCCESSFUL | FAILED. Raises CommandNotFound, IllegalTransition."""
        reply = self.scripts.finish_command(
            keys=[
                *_transition_keys(app_id, device_id, *FINISH_STATUSES),
                keys.finished(app_id, device_id),
            ],
            args=[command_id, now, code, detail],
        )
        _raise_for(reply)

    def tick(self, app_id: str, device_id: str, now: int, limit: int) -> Tick:
        """Run the device's due timers (expiry, ack timeout) and reschedule it."""
        expired, retransmitting, timed_out, next_due = self.scripts.tick_device(
            keys=keys.for_device(
                app_id,
                device_id,
                keys.pending,
                keys.statuses,
                keys.lifecycle,
                keys.in_flight,
                keys.retransmit,
                keys.expiry,
                keys.outbox,
                keys.callbacks,
                keys.documents,
                keys.device_commands,
                *map(keys.in_status, ("PENDING", "EXPIRED", "SENT", "TIMEOUT")),
                keys.finished,
            ),
            args=[now, limit],
        )
        tick = Tick(expired, retransmitting, timed_out, None if next_due == -1 else next_due)
        self.timers.reschedule(app_id, device_id, tick.next_due)
        # The index is in another slot than the device, so the reschedule cannot be part of the
        # script: a create or fetch that scheduled between the two was just overwritten. Its
        # timer is in the device's zsets by then, so one more look finds it.
        earliest = self._earliest_due(app_id, device_id)
        if earliest is not None and (tick.next_due is None or earliest < tick.next_due):
            self.timers.schedule(app_id, device_id, earliest)
        return tick

    def _earliest_due(self, app_id: str, device_id: str) -> int | None:
        """The device's earliest expiry or ack deadline (the zsets tick_device.lua reads)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrange(keys.expiry(app_id, device_id), 0, 0, withscores=True)
        pipe.zrange(keys.in_flight(app_id, device_id), 0, 0, withscores=True)
        firsts = [int(first[0][1]) for first in pipe.execute() if first]
        return min(firsts, default=None)
