"""A test-only guard: fails any Lua script or MULTI/EXEC whose keys hash to more than one Redis
Cluster slot, on a plain Redis too, so a change that would bring CROSSSLOT back on a cluster
fails the single-server suite as well.

`install` wraps `devcmd.connections.make_redis` so every client devcmd makes (and every pipeline
made from it) is checked; other clients (Celery's, the tests' own) are left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest
from redis.client import Pipeline, Redis
from redis.cluster import key_slot

from devcmd import connections

FLAG = "_devcmd_slot_guard"
MULTI_KEY = {"DEL", "UNLINK", "EXISTS", "TOUCH", "MGET", "SINTER", "SUNION", "SDIFF"}
NO_KEY = {"PING", "MULTI", "EXEC", "SCRIPT", "INFO", "TIME"}


class CrossSlot(AssertionError):
    """A script or transaction touched keys in more than one cluster slot."""


def _encode(key) -> bytes:
    return key if isinstance(key, bytes) else str(key).encode()


def command_keys(args: Sequence) -> list:
    """The keys of one command as redis-py sends it (name first), for the commands devcmd uses
    in scripts and transactions."""
    name = str(args[0]).upper()
    if name in ("EVALSHA", "EVAL"):
        return list(args[3 : 3 + int(args[2])])
    if name in NO_KEY or len(args) < 2:
        return []
    if name in MULTI_KEY:
        return list(args[1:])
    return [args[1]]


def slots(keys: Iterable) -> set[int]:
    return {key_slot(_encode(key)) for key in keys}


def check(what: str, keys: list) -> None:
    found = slots(keys)
    if len(found) > 1:
        raise CrossSlot(f"{what} touches {len(found)} cluster slots: {sorted(map(str, keys))}")


def _guarded_execute_command(original):
    def execute_command(self, *args, **options):
        if getattr(self, FLAG, False) and str(args[0]).upper() in ("EVALSHA", "EVAL"):
            check("a Lua script", command_keys(args))
        return original(self, *args, **options)

    return execute_command


def _guarded_pipeline(original):
    def pipeline(self, transaction=True, shard_hint=None):
        pipe = original(self, transaction, shard_hint)
        setattr(pipe, FLAG, getattr(self, FLAG, False))
        return pipe

    return pipeline


def _guarded_pipeline_execute(original):
    def execute(self, raise_on_error: bool = True):
        if getattr(self, FLAG, False):
            stack = [args for args, _ in self.command_stack]
            if self.transaction:
                check("a MULTI/EXEC", [key for args in stack for key in command_keys(args)])
            for args in stack:
                if str(args[0]).upper() in ("EVALSHA", "EVAL"):
                    check("a Lua script", command_keys(args))
        return original(self, raise_on_error)

    return execute


def guard(client):
    """Mark a client (plain Redis) so its scripts and transactions are checked."""
    if isinstance(client, Redis):
        setattr(client, FLAG, True)
    return client


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Check every client `devcmd.connections.make_redis` returns, until `monkeypatch` undoes."""
    make_redis = connections.make_redis
    monkeypatch.setattr(connections, "make_redis", lambda url, **kw: guard(make_redis(url, **kw)))
    monkeypatch.setattr(Redis, "execute_command", _guarded_execute_command(Redis.execute_command))
    monkeypatch.setattr(Redis, "pipeline", _guarded_pipeline(Redis.pipeline))
    monkeypatch.setattr(Pipeline, "execute", _guarded_pipeline_execute(Pipeline.execute))
