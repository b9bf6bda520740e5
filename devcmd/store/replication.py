"""REDIS_MIN_REPLICAS_ACK: an answer that promises a command's fate waits until that many
replicas hold the write behind it, so a master that dies right after the answer cannot take the
write with it (its promoted replica would then tell another fate: a cancelled command handed to
the device, commands handed out that a revocation then counts as cancelled, a result the device
was told was taken timing out instead).
"""

from __future__ import annotations

from collections.abc import Iterable

from redis import Redis, RedisCluster

from devcmd.faults import NotReplicated
from devcmd.store.scripts import slot_client

__all__ = ["NotReplicated", "Replicas"]

# How long the marker `hold` writes lives: only its place in the replication stream matters.
MARKER_MS = 1000


class Replicas:
    """What REDIS_MIN_REPLICAS_ACK asks of the data store's replicas (nothing when 0)."""

    def __init__(self, redis: Redis | RedisCluster, required: int, timeout_ms: int) -> None:
        self.redis = redis
        self.required = required
        self.timeout_ms = timeout_ms

    def hold(self, key: str) -> None:
        """Return once `required` replicas of the master that owns `key` hold every write that
        master had taken when this was called; raises NotReplicated if fewer did within the
        timeout. Call it after the write, before answering for it.

        WAIT counts what replicas took of its own connection's writes, and a pooled connection
        need not be the one the write went down: so it writes first, down the same connection,
        a marker in `key`'s slot (gone a second later). The master replicates in the order it
        executes, so replicas that hold the marker hold every write before it.
        """
        self.hold_all([key])

    def hold_all(self, keys: Iterable[str]) -> None:
        """`hold` for every master that owns one of `keys`: one marker and WAIT per master,
        in turn."""
        if self.required <= 0:
            return
        by_master: dict[int, tuple[Redis, str]] = {}
        for key in keys:
            server = slot_client(self.redis, key)
            by_master.setdefault(id(server), (server, key))
        for server, key in by_master.values():
            pipe = server.pipeline(transaction=False)
            pipe.set(f"{key}:replicated", b"", px=MARKER_MS)
            self.queue_wait(pipe)
            _, acked = pipe.execute()
            self.check(acked)

    def queue_wait(self, pipe) -> None:
        """Queue WAIT on `pipe`: it covers the writes queued before it on the same connection."""
        pipe.execute_command("WAIT", self.required, self.timeout_ms)

    def check(self, acked) -> None:
        """Raises NotReplicated when WAIT's answer `acked` is under `required` (or an error)."""
        if isinstance(acked, Exception):
            raise acked
        if int(acked) < self.required:
            raise NotReplicated(
                f"{acked} of {self.required} replicas acknowledged the write in "
                f"{self.timeout_ms} ms (REDIS_MIN_REPLICAS_ACK)"
            )
