"""`/healthz` is liveness only; `/readyz` checks Redis, broker, workers and queue depths, each
with its own detail, and answers 503 when any fails."""

from __future__ import annotations

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app import create_app
from devcmd.clock import now_ms
from devcmd.config import Config
from devcmd.embedded import free_port
from devcmd.services import Services
from tests.unit.conftest import NullBroker


def unreachable_redis() -> Redis:
    """A client for a port nobody listens on: every command fails to connect, at once."""
    return Redis(port=free_port(), retry=Retry(NoBackoff(), 0), decode_responses=True)


@pytest.fixture
def worker_alive(svc: Services) -> None:
    svc.health.beat("revocations@host", now_ms())


def test_healthz_answers_without_redis_and_readyz_says_what_is_down(svc: Services) -> None:
    down = Services(svc.config, unreachable_redis(), NullBroker())
    client = create_app(services=down).test_client()

    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    checks = ready.json["checks"]
    assert {name: check["ok"] for name, check in checks.items()} == {
        "redis": False,
        "broker": False,
        "workers": False,
        "queues": False,
    }
    assert checks["redis"]["error"].startswith("ConnectionError")
    assert checks["workers"]["error"] == "redis is down"
    assert ready.json["status"] == "unavailable"


def test_ready_with_a_live_worker_and_short_queues(client, svc, worker_alive) -> None:
    svc.redis.rpush("revocations", "m1", "m2")
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json
    checks = ready.json["checks"]
    assert checks["workers"] == {"ok": True, "alive": 1, "heartbeatTtlSeconds": 15}
    assert checks["queues"] == {
        "ok": True,
        "revocations": {"depth": 2, "limit": 10_000},
        "callbacks": {"depth": 0, "limit": 10_000},
    }
    assert checks["redis"]["ok"]
    assert checks["broker"]["ok"]
    assert checks["broker"]["sameAsRedis"] is True  # one server: pinged once


def test_not_ready_without_a_recent_heartbeat(client, svc) -> None:
    stale = now_ms() - (svc.config.worker_heartbeat_ttl + 1) * 1000
    svc.health.beat("revocations@host", stale)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"]["workers"]["ok"] is False
    assert ready.json["checks"]["redis"]["ok"] is True


def test_a_queue_over_its_limit_fails_readiness_priority_lists_included(svc, worker_alive) -> None:
    limited = Services(svc.config.with_(callback_queue_limit=2), svc.redis, NullBroker())
    svc.redis.rpush("callbacks", "m1", "m2")
    svc.redis.rpush("callbacks\x06\x163", "m3")  # kombu's list for priority 3
    ready = create_app(services=limited).test_client().get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"]["queues"]["callbacks"] == {"depth": 3, "limit": 2}
    assert ready.json["checks"]["queues"]["ok"] is False


def test_a_separate_broker_that_is_down_fails_only_broker_and_queues(svc, worker_alive) -> None:
    split = Services(svc.config, svc.redis, NullBroker())
    split.broker_redis = unreachable_redis()  # as if CELERY_BROKER_URL named a dead server
    ready = create_app(services=split).test_client().get("/readyz")
    assert ready.status_code == 503
    oks = {name: check["ok"] for name, check in ready.json["checks"].items()}
    assert oks == {"redis": True, "broker": False, "workers": True, "queues": False}
    assert ready.json["checks"]["queues"]["error"] == "broker is down"


def test_separate_broker_url_gets_its_own_client() -> None:
    same = Services.from_config(Config(redis_url="redis://127.0.0.1:1/0"))
    other = Services.from_config(
        Config(redis_url="redis://127.0.0.1:1/0", celery_broker_url="redis://127.0.0.1:2/1")
    )
    try:
        assert same.broker_redis is same.redis
        assert other.broker_redis is not other.redis
        assert other.broker_redis.connection_pool.connection_kwargs["port"] == 2
    finally:
        same.close()
        other.close()


def test_a_sentinel_broker_is_read_through_its_sentinels(svc, worker_alive) -> None:
    """Queue depths and the broker ping go to the master the Sentinels name; with no Sentinel
    answering, readiness fails on the broker instead of skipping it."""
    port = free_port()
    sentinel = svc.config.with_(
        redis_url="redis://127.0.0.1:1/0", celery_broker_url=f"sentinel://127.0.0.1:{port}"
    )
    split = Services(sentinel, svc.redis, NullBroker())
    ready = create_app(services=split).test_client().get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"]["broker"]["ok"] is False
    assert "MasterNotFoundError" in ready.json["checks"]["broker"]["error"]
    assert ready.json["checks"]["queues"] == {"ok": False, "error": "broker is down"}
    split.broker_redis.close()
