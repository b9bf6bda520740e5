"""Shared fixtures: the real Redis back ends of integration and end-to-end tests.

`redis_url` is the data store of a test. Modules listed in CLUSTER_MODULES run each of their
tests on every back end of BACKENDS (a single redis-server and a 3-master Redis Cluster);
the rest run on the single server. `broker_url` is what CELERY_BROKER_URL must be beside it:
None for a single server (the broker shares it), a separate single server for a cluster
(Celery cannot use a cluster as its broker).
"""

from __future__ import annotations

import pytest
import redis

from devcmd.embedded import RedisServer, free_port
from devcmd.embedded_cluster import EmbeddedCluster

BACKENDS = {"single": "redis_server", "cluster": "cluster_server"}
CLUSTER_MODULES = {
    "test_revocations",
    "test_lifecycle",
    "test_notifications",
    "test_state_machine",
    "test_isolation",
    "test_flow_control",
    "test_concurrency",
    "test_slot_guard",
    "test_scaling",
    "test_revocation_flow",
    "test_enos",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "redis_backend" in metafunc.fixturenames and module in CLUSTER_MODULES:
        metafunc.parametrize("redis_backend", list(BACKENDS), indirect=True)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One real redis-server for the session, on a free loopback port."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cluster_server(tmp_path_factory):
    """A real 3-master Redis Cluster for the session (embedded servers, loopback ports)."""
    cluster = EmbeddedCluster(tmp_path_factory.mktemp("cluster"), masters=3).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_backend(request) -> str:
    """Which back end this test's data store is (a key of BACKENDS)."""
    return getattr(request, "param", "single")


def _flush(server) -> None:
    if isinstance(server, EmbeddedCluster):
        server.flush()
        return
    with redis.Redis.from_url(server.url) as client:
        client.flushall()


@pytest.fixture
def redis_url(request, redis_backend, redis_server):
    """The back end's URL, flushed before and after the test (the broker's server too)."""
    server = request.getfixturevalue(BACKENDS[redis_backend])
    for each in {server, redis_server}:
        _flush(each)
    yield server.url
    for each in {server, redis_server}:
        _flush(each)


@pytest.fixture
def broker_url(redis_backend, redis_server) -> str | None:
    """CELERY_BROKER_URL beside `redis_url`: a separate server when the store is a cluster."""
    return redis_server.url if redis_backend == "cluster" else None
