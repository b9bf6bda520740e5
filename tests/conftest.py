"""Shared fixtures: a real server for integration and end-to-end tests, one per back end.

`redis_server` is parametrized by back end (tests/backends.py): every test that uses it runs on
each back end its `backends` marker names (`pytest.mark.backends(*backends.CORE)`), by default
on the embedded Valkey only. Each back end's server starts once for the session.
"""

from __future__ import annotations

import pytest
import redis

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


@pytest.fixture
def redis_url(redis_server):
    """The session server's URL, flushed before and after the test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield redis_server.url
    client.flushall()
    client.close()
