"""REDIS_URL / CELERY_BROKER_URL: which forms are accepted, and the clear refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import RedisClusterException

from devcmd import connections
from devcmd.config import Config
from devcmd.connections import ConfigError, Location


def test_a_cluster_url_lists_its_seed_nodes_and_credentials() -> None:
    nodes, user, password = connections.cluster_nodes(
        "redis+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2:7001"
    )
    assert nodes == [Location("10.0.0.1", 7000), Location("10.0.0.2", 7001)]
    assert (user, password) == ("u", "p@ss")


def test_a_sentinel_url_lists_every_sentinel() -> None:
    url = "sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26380"
    assert connections.sentinel_nodes(url) == [
        Location("10.0.0.1", 26379),
        Location("10.0.0.2", 26380),
    ]


@pytest.mark.parametrize(
    ("redis_url", "broker", "complaint"),
    [
        ("redis+cluster://h:1,h:2", None, "cannot use as its broker"),
        ("redis+cluster://h:1", "redis+cluster://h:1", "cannot use as its broker"),
        ("redis+cluster://h:x", "redis://b:1/0", "bad port"),
        ("redis+cluster://h", "redis://b:1/0", "is not host:port"),
        ("memcached://h:1", None, "REDIS_URL must start with"),
        ("redis://h:1/0", "amqp://b:1", "CELERY_BROKER_URL must be"),
        ("redis://h:1/0", "redis+cluster://h:1", "CELERY_BROKER_URL must be"),
        # kombu has no unix transport: it would fail at the first publish, not at start.
        ("redis://h:1/0", "unix:///tmp/r.sock", "CELERY_BROKER_URL to redis[+]socket:///"),
        ("unix:///tmp/r.sock", None, "REDIS_URL names a Unix socket .* redis[+]socket:///"),
    ],
)
def test_settings_devcmd_cannot_run_with_are_refused(redis_url, broker, complaint) -> None:
    with pytest.raises(ConfigError, match=complaint):
        connections.check(Config(redis_url=redis_url, celery_broker_url=broker))


def test_a_sentinel_broker_needs_a_master_name() -> None:
    config = Config(
        redis_url="redis://h:1/0",
        celery_broker_url="sentinel://h:26379",
        celery_broker_sentinel_master=None,
    )
    with pytest.raises(ConfigError, match="CELERY_BROKER_SENTINEL_MASTER"):
        connections.check(config)


@pytest.mark.parametrize(
    ("redis_url", "broker"),
    [
        ("redis://h:1/0", None),
        ("rediss://h:1/0", "redis://b:1/0"),
        ("unix:///tmp/r.sock", "redis+socket:///tmp/r.sock"),
        ("redis://h:1/0", "redis+socket:///tmp/r.sock?virtual_host=1"),
        ("redis+cluster://h:1,h:2", "redis://b:1/0"),
        ("redis+cluster://h:1,h:2", "sentinel://s:1;sentinel://s:2"),
    ],
)
def test_supported_settings_pass(redis_url, broker) -> None:
    connections.check(Config(redis_url=redis_url, celery_broker_url=broker))


def test_a_socket_broker_is_read_through_redis_pys_unix_form() -> None:
    config = Config(celery_broker_url="redis+socket://:pw@/tmp/r.sock?virtual_host=2")
    reader = connections.make_broker_redis(config)
    given = reader.connection_pool.connection_kwargs
    assert (given["path"], given["db"], given["password"]) == ("/tmp/r.sock", 2, "pw")
    reader.close()


def test_the_factory_makes_a_cluster_client_only_for_a_cluster_url() -> None:
    single = connections.make_redis("redis://127.0.0.1:1/0")
    assert type(single) is Redis
    single.close()
    # RedisCluster connects to a seed node on construction: with none up it says so.
    with pytest.raises(RedisClusterException, match=r"127\.0\.0\.1"):
        connections.make_redis("redis+cluster://127.0.0.1:1")
    assert connections.is_cluster("redis+cluster://h:1")
    assert not connections.is_cluster("redis://h:1")


def test_devcmd_run_and_the_workers_refuse_a_cluster_without_a_broker(tmp_path) -> None:
    """Both refuse before starting anything, with the reason."""
    env = {"REDIS_URL": "redis+cluster://127.0.0.1:1", "DEVCMD_HOME": str(tmp_path), "PATH": ""}
    devcmd = Path(sys.executable).parent / "devcmd"
    run = subprocess.run([str(devcmd), "run"], env=env, capture_output=True, text=True)
    assert run.returncode == 1
    assert "Celery cannot use as its broker" in run.stderr
    worker = subprocess.run(
        [sys.executable, "-c", "import workers"], env=env, capture_output=True, text=True
    )
    assert worker.returncode == 1
    assert "set CELERY_BROKER_URL" in worker.stderr
