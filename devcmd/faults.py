"""Which Redis and broker failures mean "the store cannot take work now" (a 503 and a retry),
as opposed to a bug (a 500): one classification for the web, the workers and the domain.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from kombu.exceptions import OperationalError
from redis import exceptions as rx

log = logging.getLogger(__name__)


class NotReplicated(rx.RedisError):
    """Fewer replicas than REDIS_MIN_REPLICAS_ACK confirmed a write in time (devcmd.store.
    replication): the caller must not be told it succeeded (the storage error answer; a retry
    with the same Idempotency-Key is safe). The write itself was taken by the master."""


# Failures of the connection or of the server's state, never of the command itself:
# BusyLoadingError (LOADING) and MaxConnectionsError are ConnectionErrors; ClusterError covers
# CLUSTERDOWN, MASTERDOWN and the "TTL exhausted" of a MOVED storm.
UNAVAILABLE: tuple[type[Exception], ...] = (
    rx.ConnectionError,
    rx.TimeoutError,
    rx.ReadOnlyError,
    rx.OutOfMemoryError,
    rx.ClusterError,
    rx.TryAgainError,
    OperationalError,  # kombu: the broker refused or dropped the publish
    NotReplicated,
)
# The same states reported inside another error, e.g. a Lua script's `redis.call` refused with
# OOM on Redis 6.2 surfaces as "ERR Error running script ... -OOM command not allowed ...".
_STATE_CODES = re.compile(
    r"(?:^|[\s:-])(OOM|READONLY|LOADING|CLUSTERDOWN|TRYAGAIN|MASTERDOWN|NOREPLICAS|BUSY)\b"
)


# The server's own error code for the state, where redis-py parses it into a class.
_CODES: tuple[tuple[type[Exception], str], ...] = (
    (rx.OutOfMemoryError, "OOM"),
    (rx.ReadOnlyError, "READONLY"),
    (rx.BusyLoadingError, "LOADING"),
    (rx.TryAgainError, "TRYAGAIN"),
    (rx.MasterDownError, "MASTERDOWN"),
    (rx.ClusterDownError, "CLUSTERDOWN"),
)


def cause(exc: BaseException) -> str | None:
    """A short name for the store's trouble if `exc` is one ("OOM", "READONLY", "LOADING",
    "TimeoutError", "ConnectionError", ...), else None (a bug, not the store's state)."""
    code = refusal(exc)
    if code is not None:
        return code
    return type(exc).__name__ if isinstance(exc, UNAVAILABLE) else None


def refusal(exc: BaseException) -> str | None:
    """The state code if the server answered that it refuses the command in its current state
    (it then ran none of it: a caller may undo what it wrote before), else None; a timeout or
    a dropped connection is not one (the command may have run)."""
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    found = _STATE_CODES.search(str(exc)) if isinstance(exc, rx.ResponseError) else None
    return found.group(1) if found else None


@contextmanager
def redone_later(what: str) -> Iterator[None]:
    """Run a step that beat redoes by itself if it is lost (enqueueing a sweep or a flush whose
    state is already in Redis): a store failure there is logged, not raised, so a call whose
    real work is done is not answered as failed."""
    try:
        yield
    except Exception as exc:
        if cause(exc) is None:
            raise
        log.warning("%s deferred to beat's recovery: %s", what, cause(exc))


@contextmanager
def undone_if_refused(undo: Callable[[], object]) -> Iterator[None]:
    """Run the atomic step of a write whose earlier, separate writes (indexes in other hash
    slots) `undo` removes if the server refuses the step (out of memory, read-only, ...): it
    then ran none of it, and the call leaves no trace. After a timeout the step may have run,
    so nothing is undone."""
    try:
        yield
    except rx.RedisError as exc:
        if refusal(exc):
            undo()
        raise
