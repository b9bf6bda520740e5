"""Which Redis and broker failures mean "the store cannot take work now" (a 503 and a retry),
as opposed to a bug (a 500): one classification for the web, the workers and the domain.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

from kombu.exceptions import OperationalError
from redis import exceptions as rx

log = logging.getLogger(__name__)

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
)
# The same states reported inside another error, e.g. a Lua script's `redis.call` refused with
# OOM on Redis 6.2 surfaces as "ERR Error running script ... -OOM command not allowed ...".
_STATE_CODES = re.compile(
    r"(?:^|[\s:-])(OOM|READONLY|LOADING|CLUSTERDOWN|TRYAGAIN|MASTERDOWN|NOREPLICAS|BUSY)\b"
)


def cause(exc: BaseException) -> str | None:
    """A short name for the store's trouble if `exc` is one ("OOM", "TimeoutError", ...), else
    None (the failure is a bug, not the store's state)."""
    found = _STATE_CODES.search(str(exc)) if isinstance(exc, rx.ResponseError) else None
    if isinstance(exc, UNAVAILABLE) or found:
        return found.group(1) if found else type(exc).__name__
    return None


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
