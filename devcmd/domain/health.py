"""Readiness: can this deployment take work now? Each check answers with its own detail."""

from __future__ import annotations

import time
from collections.abc import Callable

from redis import Redis, RedisError

from devcmd.broker import queue_depths, queue_limits
from devcmd.clock import now_ms
from devcmd.services import Services

NOT_READ = "the broker is not a plain Redis URL (e.g. Sentinel): not read"


def readiness(svc: Services) -> tuple[bool, dict[str, dict]]:
    """Redis answers and can take writes (not loading, not a read-only replica, memory under
    REDIS_MEMORY_READY_LIMIT of maxmemory), the broker answers, a worker has beaten within
    WORKER_HEARTBEAT_TTL, and every queue is under its limit. Returns (all passed, {check:
    {"ok": ..., detail}}); never raises for an unreachable server, which is a failed check."""
    checks = {"redis": _guarded(lambda: _writable(svc))}
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
    """Run `check` if the server it needs answered (even one that cannot take writes)."""
    answered = needed["ok"] or "latencyMs" in needed
    return _guarded(check) if answered else {"ok": False, "error": f"{name} is down"}


def _guarded(check: Callable[[], dict]) -> dict:
    try:
        return check()
    except RedisError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}


def redis_state(svc: Services) -> dict[str, int | str] | None:
    """The data store's memory use and limit, loading flag and role (HealthStore.server_state),
    None where INFO is refused. Raises RedisError when it is unreachable."""
    return svc.health.server_state()


def write_trouble(state: dict[str, int | str], memory_limit: float) -> str | None:
    """Why a server in `state` cannot take writes now, or None."""
    if state["loading"]:
        return "Redis is loading its data"
    if state["role"] != "master":
        return f"Redis is a read-only {state['role']} (a failover in progress?)"
    used, most = int(state["used_memory"]), int(state["maxmemory"])
    if most and used > memory_limit * most:
        return (
            f"Redis memory: used_memory {used} B is {used / most:.0%} of maxmemory {most} B "
            f"(REDIS_MEMORY_READY_LIMIT {memory_limit:.0%})"
        )
    return None


def _writable(svc: Services) -> dict:
    started = time.perf_counter()
    state = redis_state(svc)
    if state is None:
        return _ping(svc.redis) | {"memory": "not read: the server refuses INFO"}
    detail = {
        "latencyMs": round((time.perf_counter() - started) * 1000, 2),
        "usedMemory": state["used_memory"],
        "maxMemory": state["maxmemory"],
        "role": state["role"],
    }
    trouble = write_trouble(state, svc.config.redis_memory_ready_limit)
    return {"ok": trouble is None, **detail} | ({"error": trouble} if trouble else {})


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
