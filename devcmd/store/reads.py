"""Store reads that can ride in another step's round trip.

A hot read call pays its admission (one round trip) and then its own reads (another). A read
has no side effect, so on one server it can go in the same pipeline as the admission script and
be thrown away when admission refuses the call (`AppStore.admit_reading`); a `Read` is the
commands of one such read and how their replies become its answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from redis import Redis
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

T = TypeVar("T")


@dataclass(frozen=True)
class Read(Generic[T]):
    """Read-only commands (`(method name, *arguments)` as redis-py's pipeline takes them), all
    in one cluster slot, and the function that turns their replies into the read's answer."""

    commands: tuple[tuple[Any, ...], ...]
    answer: Callable[[Sequence[Any]], T]

    def queue(self, pipe) -> None:
        """Queue the commands on `pipe`, in order."""
        for name, *args in self.commands:
            getattr(pipe, name)(*args)

    def take(self, replies: Sequence[Any]) -> T | None:
        """The answer from the commands' replies (as `queue` queued them); raises the first
        error among them, except NOSCRIPT (a script sent by its sha to a server that lost its
        scripts: a restart, SCRIPT FLUSH), which gives None: the caller reads anew through its
        store, whose call loads the script."""
        for reply in replies:
            if isinstance(reply, NoScriptError):
                return None
            if isinstance(reply, Exception):
                raise reply
        return self.answer(replies)

    def run(self, redis: Redis | RedisCluster) -> T | None:
        """The read on its own round trip (one slot: a cluster sends it to one node)."""
        pipe = redis.pipeline(transaction=False)
        self.queue(pipe)
        return self.take(pipe.execute())
