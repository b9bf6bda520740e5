"""Shared fixtures: a real server for integration and end-to-end tests, one per back end.

`redis_server` is parametrized by back end (tests/backends.py): every test that uses it runs on
each back end its `backends` marker names (`pytest.mark.backends(*backends.CORE)`), by default
on the embedded Valkey only. Each back end's server starts once for the session.
A back end whose server has a `broker_url` (the cluster: Celery cannot use one as its broker)
hands it to `broker_url`, the CELERY_BROKER_URL beside `redis_url`; else that is None (the
broker shares the data store's server).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devcmd.embedded import RedisServer, find_binary, free_port
from tests import backends


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "backends(*names): run on these servers (tests/backends.py; default: valkey only)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `redis_server` (directly or through `redis_url`) by the marked back ends."""
    if "redis_server" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    names = marker.args if marker else backends.DEFAULT
    unknown = set(names) - set(backends.BACKENDS)
    if unknown:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: unknown back ends {unknown}")
    metafunc.parametrize("redis_server", names, indirect=True, scope="session")


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One real server of the test's back end for the session, on a free loopback port."""
    name = request.param
    try:
        server = backends.BACKENDS[name](tmp_path_factory.mktemp(name))
    except backends.Unavailable as exc:
        pytest.skip(f"back end {name}: {exc}")
    yield server
    server.stop()


def _flush(server: backends.Server) -> None:
    flush = getattr(server, "flush", None)
    if flush is not None:  # a cluster and its broker: each server on its own
        flush()
        return
    with redis.Redis.from_url(server.url) as client:
        client.flushall()


@pytest.fixture
def redis_url(redis_server):
    """The session server's URL, flushed (its broker's too) before and after the test."""
    _flush(redis_server)
    yield redis_server.url
    _flush(redis_server)


@pytest.fixture
def redis_backend(request: pytest.FixtureRequest, redis_server) -> str:
    """Which back end this test's data store is (a key of tests/backends.BACKENDS)."""
    return request.node.callspec.params["redis_server"]


@pytest.fixture
def broker_url(redis_server) -> str | None:
    """CELERY_BROKER_URL beside `redis_url`: a separate server when the store is a cluster."""
    return getattr(redis_server, "broker_url", None)


def debug_args() -> tuple[str, ...]:
    """The flag that enables DEBUG on Redis >= 7 and Valkey (Redis 6.2 has it on, and would
    refuse the unknown flag)."""
    version = subprocess.run([find_binary(), "--version"], capture_output=True, text=True).stdout
    old_redis = "Redis server v=6." in version or "Redis server v=5." in version
    return () if old_redis else ("--enable-debug-command", "local")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server only this test uses (the fault tests stop, pause, fill it up and DEBUG SLEEP it)."""
    found = RedisServer(tmp_path / "redis", free_port(), extra_args=debug_args()).start()
    yield found
    found.kill()
