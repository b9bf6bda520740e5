"""Readiness: can this deployment take work now? Each check answers with its own detail."""

from __future__ import annotations

import time
from collections.abc import Callable

from redis import Redis, RedisError
from redis.cluster import RedisCluster

from devcmd.clock import now_ms
from devcmd.jobs import queue_depths, queue_limits
from devcmd.services import Services

NOT_READ = "the broker is not a plain Redis URL (e.g. Sentinel): not read"


def readiness(svc: Services) -> tuple[bool, dict[str, dict]]:
    """Redis and the broker answer, a worker has beaten within WORKER_HEARTBEAT_TTL, and every
    queue is under its limit. Returns (all passed, {check: {"ok": ..., detail}}); never raises
    for an unreachable server, which is a failed check."""
    checks = {"redis": _guarded(lambda: _ping_store(svc.redis))}
    if svc.broker_redis is svc.redis:
        checks["broker"] = {**checks["redis"], "sameAsRedis": True}
    elif svc.broker_redis is None:
        checks["broker"] = {"ok": True, "skipped": NOT_READ}
    else:
        checks["broker"] = _guarded(lambda: _ping(svc.broker_redis))
    # A check that needs a server found down is not tried (each try would wait out the
    # client's connection retries again).
    checks["workers"] = _after(checks["redis"], "redis", lambda: _workers(svc))
    checks["queues"] = _after(checks["broker"], "broker", lambda: _queues(svc))
    return all(check["ok"] for check in checks.values()), checks


def queue_backlog(svc: Services) -> dict[str, tuple[int, int]] | None:
    """(depth, limit) of each devcmd queue, read in one round trip to the broker's Redis; None
    when the broker is not a Redis devcmd reads. Raises RedisError if it is unreachable."""
    if svc.broker_redis is None:
        return None
    limits = queue_limits(svc.config)
    depths = queue_depths(svc.broker_redis, tuple(limits))
    return {queue: (depths[queue], limit) for queue, limit in limits.items()}


def live_workers(svc: Services) -> int:
    """Workers whose heartbeat is younger than WORKER_HEARTBEAT_TTL."""
    return svc.health.workers_since(now_ms() - svc.config.worker_heartbeat_ttl * 1000)


def _after(needed: dict, name: str, check: Callable[[], dict]) -> dict:
    return _guarded(check) if needed["ok"] else {"ok": False, "error": f"{name} is down"}


def _guarded(check: Callable[[], dict]) -> dict:
    try:
        return check()
    except RedisError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}


def _ping_store(client: Redis | RedisCluster) -> dict:
    """A single server's ping; on a cluster, each master's, by `host:port` (the check fails
    when any master does not answer)."""
    if not isinstance(client, RedisCluster):
        return _ping(client)
    masters = {
        f"{node.host}:{node.port}": _guarded(lambda node=node: _ping(node.redis_connection))
        for node in client.get_primaries()
    }
    return {"ok": all(check["ok"] for check in masters.values()), "masters": masters}


def _ping(client: Redis) -> dict:
    started = time.perf_counter()
    client.ping()
    return {"ok": True, "latencyMs": round((time.perf_counter() - started) * 1000, 2)}


def _workers(svc: Services) -> dict:
    alive = live_workers(svc)
    return {"ok": alive > 0, "alive": alive, "heartbeatTtlSeconds": svc.config.worker_heartbeat_ttl}


def _queues(svc: Services) -> dict:
    backlog = queue_backlog(svc)
    if backlog is None:
        return {"ok": True, "skipped": NOT_READ}
    detail = {q: {"depth": depth, "limit": limit} for q, (depth, limit) in backlog.items()}
    return {"ok": all(depth <= limit for depth, limit in backlog.values()), **detail}
