"""The key layout a store was written with, kept in Redis (`keys.layout()`), so a process of
another layout (another devcmd version, or another INDEX_BUCKETS) refuses to start instead of
writing where the others do not look."""

from __future__ import annotations

from redis import Redis

from devcmd import faults
from devcmd.store import keys

# The global keys of layout 1 (before the indexes were bucketed): their presence without a
# layout key means a store written by an older devcmd.
LEGACY_KEYS = (
    f"{keys.PREFIX}:timers",
    f"{keys.PREFIX}:outboxes",
    f"{keys.PREFIX}:tasks:active",
    f"{keys.PREFIX}:notifications:due",
    f"{keys.PREFIX}:notifications:failed",
    f"{keys.PREFIX}:device-owners",
)


class LayoutMismatch(RuntimeError):
    """The store was written with another key layout than this process would use."""


def expected(buckets: int) -> str:
    return f"{keys.LAYOUT_VERSION}/{buckets}"


def ensure(redis: Redis, buckets: int) -> None:
    """Record this layout in an empty store, or check it against the recorded one.

    Raises LayoutMismatch saying what differs. A store that cannot be reached now is not
    judged (down, loading, out of memory, read-only: the process starts and answers 503 like
    on any other command until it recovers)."""
    want = expected(buckets)
    try:
        found = redis.get(keys.layout())
        if found is None:
            # One EXISTS per key: they are in different slots of a cluster.
            if any(redis.exists(key) for key in LEGACY_KEYS):
                found = "1/1"
            else:
                redis.set(keys.layout(), want, nx=True)
                found = redis.get(keys.layout())
    except faults.UNAVAILABLE:
        return
    if found != want:
        raise LayoutMismatch(_mismatch(str(found), buckets))


def _mismatch(found: str, buckets: int) -> str:
    """What to do about a store recorded with layout `found`."""
    version, _, stored_buckets = found.partition("/")
    if version.endswith("-migrating"):
        return (
            f"the data store is being migrated to key layout {version.removesuffix('-migrating')}"
            " (or a migration was interrupted): run `devcmd migrate` to finish it"
        )
    if version == str(keys.LAYOUT_VERSION - 1):  # the one layout `devcmd migrate` moves from
        return (
            f"the data store was written with key layout {version} and INDEX_BUCKETS="
            f"{stored_buckets}; this devcmd uses layout {keys.LAYOUT_VERSION}. Stop the older "
            f"processes and run `devcmd migrate` (with INDEX_BUCKETS={stored_buckets}) first."
        )
    return (
        f"the data store was written with key layout {version} and INDEX_BUCKETS="
        f"{stored_buckets}; this devcmd uses layout {keys.LAYOUT_VERSION} with "
        f"INDEX_BUCKETS={buckets}. Start it with INDEX_BUCKETS={stored_buckets} (same "
        "layout), or point it at an empty store."
    )
