"""Readiness: can this deployment take work now? Each check answers with its own detail."""

from __future__ import annotations

import time
from collections.abc import Callable

from redis import Redis, RedisError
from redis.cluster import RedisCluster

from devcmd.clock import now_ms
from devcmd.jobs import DepthReading, queue_depths, queue_limits
from devcmd.services import Services

NOT_READ = "the broker is not a plain Redis URL (e.g. Sentinel): not read"


def readiness(svc: Services) -> tuple[bool, dict[str, dict]]:
    """Redis answers and can take writes (not loading, not a read-only replica, memory under
    REDIS_MEMORY_READY_LIMIT of maxmemory, at least REDIS_MIN_REPLICAS_ACK replicas connected
    to it: with fewer, every answer that promises a command's fate would be refused), the
    broker answers, a worker has beaten within
    WORKER_HEARTBEAT_TTL, and every queue is under its limit. Returns (all passed, {check:
    {"ok": ..., detail}}); never raises for an unreachable server, which is a failed check."""
    checks = {"redis": _guarded(lambda: _check_store(svc))}
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


def queue_backlog(svc: Services, *, reuse: bool = False) -> dict[str, tuple[int, int]] | None:
    """(depth, limit) of each devcmd queue, read in one round trip to the broker's Redis; None
    when the broker is not a Redis devcmd reads. Raises RedisError if it is unreachable.

    `reuse` (backpressure) answers from this process's last reading for up to
    BACKPRESSURE_REUSE_SECONDS when that reading found every queue under its limit: a queue
    can then pass its limit by what the processes enqueue in that time. A reading over a limit
    is never reused, so a refused caller's retry reads again.
    """
    if svc.broker_redis is None:
        return None
    limits = queue_limits(svc.config)
    reading = svc.queue_reading
    if reuse and time.monotonic() < reading.until and reading.depths.keys() == limits.keys():
        depths = reading.depths
    else:
        depths = queue_depths(svc.broker_redis, tuple(limits))
        room = all(depths[queue] <= limit for queue, limit in limits.items())
        until = time.monotonic() + svc.config.backpressure_reuse_seconds if room else 0.0
        svc.queue_reading = DepthReading(depths, until)
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
    None where INFO is refused. On a cluster: memory summed over the masters, loading if any
    master loads, role `master` only if every one is. Raises RedisError when it is unreachable."""
    states = [svc.health.server_state(server) for server in _masters(svc.redis).values()]
    if not states or any(state is None for state in states):
        return None
    roles = {str(state["role"]) for state in states} - {"master"}
    return {
        "used_memory": sum(int(state["used_memory"]) for state in states),
        "maxmemory": sum(int(state["maxmemory"]) for state in states),
        "loading": max(int(state["loading"]) for state in states),
        "role": min(roles) if roles else "master",
    }


def write_trouble(
    state: dict[str, int | str], memory_limit: float, min_replicas: int = 0
) -> str | None:
    """Why a server in `state` cannot take writes now, or None."""
    if state["loading"]:
        return "Redis is loading its data"
    if state["role"] != "master":
        return f"Redis is a read-only {state['role']} (a failover in progress?)"
    if int(state["replicas"]) < min_replicas:
        return (
            f"Redis has {state['replicas']} replicas connected, REDIS_MIN_REPLICAS_ACK asks "
            f"for {min_replicas}: every answer that promises a command's fate would be refused"
        )
    used, most = int(state["used_memory"]), int(state["maxmemory"])
    if most and used > memory_limit * most:
        return (
            f"Redis memory: used_memory {used} B is {used / most:.0%} of maxmemory {most} B "
            f"(REDIS_MEMORY_READY_LIMIT {memory_limit:.0%})"
        )
    return None


def _masters(client: Redis | RedisCluster) -> dict[str, Redis]:
    """The servers that take the data store's writes: each master of a cluster by
    `host:port`, else the one server (INFO and PING answer for one server only)."""
    if not isinstance(client, RedisCluster):
        return {"": client}
    return {f"{node.host}:{node.port}": node.redis_connection for node in client.get_primaries()}


def _check_store(svc: Services) -> dict:
    """One server's write check; on a cluster, each master's, by `host:port` (the check fails
    when any master does not answer or cannot take writes)."""
    if not isinstance(svc.redis, RedisCluster):
        return _writable(svc, svc.redis)
    masters = {
        address: _guarded(lambda server=server: _writable(svc, server))
        for address, server in _masters(svc.redis).items()
    }
    answered = [check["latencyMs"] for check in masters.values() if "latencyMs" in check]
    check = {"ok": all(check["ok"] for check in masters.values()), "masters": masters}
    # The slowest master's latency, when all answered: what the checks after this one need.
    return check | ({"latencyMs": max(answered)} if len(answered) == len(masters) else {})


def _writable(svc: Services, server: Redis) -> dict:
    """Whether `server` (the data store, or one master of a cluster) can take writes now."""
    started = time.perf_counter()
    state = svc.health.server_state(server)
    if state is None:
        return _ping(server) | {"memory": "not read: the server refuses INFO"}
    detail = {
        "latencyMs": round((time.perf_counter() - started) * 1000, 2),
        "usedMemory": state["used_memory"],
        "maxMemory": state["maxmemory"],
        "role": state["role"],
        "replicas": state["replicas"],
    }
    config = svc.config
    trouble = write_trouble(state, config.redis_memory_ready_limit, config.redis_min_replicas_ack)
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
