"""The one factory of Redis clients (data store and broker) that every process uses.

`REDIS_URL` names one server (`redis://`, `rediss://`, `unix://`) or the seed nodes of a Redis
Cluster (`redis+cluster://[user:password@]host:port[,host:port...]`, the form the `limits`
package reads too). `CELERY_BROKER_URL` names one Redis (kombu's forms: `redis://`,
`rediss://`, `redis+socket:///path/to/sock`) or a set of Sentinels
(`sentinel://host:port;sentinel://host:port`, master name in CELERY_BROKER_SENTINEL_MASTER).
Celery cannot use a Redis Cluster as its broker (kombu has no cluster transport), so a cluster
data store needs a separate broker, and kombu has no `unix://` transport, so a data store on a
Unix socket needs CELERY_BROKER_URL=redis+socket://...: `check` refuses both before anything
starts.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from redis import ConnectionError as RedisConnectionError
from redis import Redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from devcmd.config import Config

CLUSTER_SCHEME = "redis+cluster"
SINGLE_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEME = "sentinel"
UNIX_SCHEME = "unix"  # redis-py's Unix socket URL: kombu has no such transport
SOCKET_SCHEME = "redis+socket"  # kombu's Redis transport on a Unix socket
BROKER_SCHEMES = ("redis", "rediss", SOCKET_SCHEME)


class ConfigError(ValueError):
    """A URL setting devcmd cannot run with; the message says which and why."""


@dataclass(frozen=True)
class Location:
    host: str
    port: int


def scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def is_cluster(url: str | None) -> bool:
    return bool(url) and scheme(url) == CLUSTER_SCHEME


def is_sentinel(url: str | None) -> bool:
    return bool(url) and scheme(url) == SENTINEL_SCHEME


def _locations(netloc: str, setting: str) -> list[Location]:
    found = []
    for part in netloc.split(","):
        parsed = urllib.parse.urlsplit(f"x://{part.strip()}")
        try:
            port = parsed.port
        except ValueError as exc:
            raise ConfigError(f"{setting}: bad port in {part!r}") from exc
        if not parsed.hostname or port is None:
            raise ConfigError(f"{setting}: {part!r} is not host:port")
        found.append(Location(parsed.hostname, port))
    return found


def cluster_nodes(url: str) -> tuple[list[Location], str | None, str | None]:
    """Seed nodes, username and password of a `redis+cluster://` URL."""
    rest = url.split("://", 1)[1].split("/", 1)[0]
    auth, _, netloc = rest.rpartition("@")
    user, _, password = auth.partition(":")
    return (
        _locations(netloc, "REDIS_URL"),
        urllib.parse.unquote(user) or None,
        urllib.parse.unquote(password) or None,
    )


def sentinel_nodes(url: str) -> list[Location]:
    """The Sentinels of a `sentinel://h:p;sentinel://h:p` URL (kombu's form)."""
    netlocs = [urllib.parse.urlsplit(part.strip()).netloc for part in url.split(";") if part]
    return [loc for netloc in netlocs for loc in _locations(netloc, "CELERY_BROKER_URL")]


def check(config: Config) -> None:
    """Refuse URL settings devcmd cannot run with, before any process starts.

    Raises ConfigError saying what to change."""
    url = config.redis_url
    if url and scheme(url) not in (*SINGLE_SCHEMES, CLUSTER_SCHEME):
        raise ConfigError(
            f"REDIS_URL must start with redis://, rediss://, unix:// or redis+cluster://, "
            f"not {scheme(url) or url!r}"
        )
    if url and is_cluster(url):
        cluster_nodes(url)
        broker = config.celery_broker_url
        if not broker or broker == url:
            raise ConfigError(
                "REDIS_URL names a Redis Cluster, which Celery cannot use as its broker (kombu "
                "has no cluster transport): set CELERY_BROKER_URL to a separate single Redis "
                "(redis://) or Sentinel set (sentinel://host:port;sentinel://host:port)"
            )
    broker = config.celery_broker_url
    if scheme(config.broker_url) == UNIX_SCHEME:
        raise ConfigError(
            f"{'CELERY_BROKER_URL' if broker else 'REDIS_URL'} names a Unix socket as unix://, "
            "which Celery cannot use as its broker (kombu has no unix transport): set "
            "CELERY_BROKER_URL to redis+socket:///path/to/sock (kombu's Redis transport)"
        )
    if broker and scheme(broker) not in (*BROKER_SCHEMES, SENTINEL_SCHEME):
        raise ConfigError(
            "CELERY_BROKER_URL must be a single Redis (redis://, rediss://, redis+socket://) or "
            f"Sentinels (sentinel://host:port;sentinel://...), not {scheme(broker) or broker!r}"
        )
    if is_sentinel(broker):
        sentinel_nodes(broker)
        if not config.celery_broker_sentinel_master:
            raise ConfigError("CELERY_BROKER_SENTINEL_MASTER must name the broker's master")


def client_options(config: Config, url: str) -> dict:
    """What makes a client of `url` never hang: REDIS_CONNECT_TIMEOUT and REDIS_SOCKET_TIMEOUT
    bound every command (devcmd sends no blocking command), pooled connections idle for
    REDIS_HEALTH_CHECK_INTERVAL seconds are PINGed before use, and on one server a dropped
    connection is retried once at once (a restarted server), a timeout never (redis-py's
    default, three retries with backoff up to 10 s, would hold a request for tens of seconds).
    A cluster client keeps its own retry: it is what re-reads the slot map after a failover."""
    options: dict = {
        "socket_connect_timeout": config.redis_connect_timeout,
        "socket_timeout": config.redis_socket_timeout,
        "health_check_interval": config.redis_health_check_interval,
    }
    if not is_cluster(url):
        options["retry"] = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
    return options


def make_redis(url: str, **options) -> Redis | RedisCluster:
    """A client of the data store at `url`: a RedisCluster for `redis+cluster://`, else a Redis.

    `options` go to the client's constructor (timeouts, decode_responses, ...)."""
    if is_cluster(url):
        nodes, username, password = cluster_nodes(url)
        return RedisCluster(
            startup_nodes=[ClusterNode(n.host, n.port) for n in nodes],
            username=username,
            password=password,
            **options,
        )
    return Redis.from_url(url, **options)


def make_broker_redis(config: Config) -> Redis | None:
    """A client of the Redis that holds Celery's queues, to read their depth (readiness and
    backpressure): the current master when the broker is behind Sentinels, else the broker's
    Redis. None when no broker is configured apart from a cluster data store (refused by
    `check`)."""
    url = config.broker_url
    # Readers of the queues (readiness, backpressure) must answer when the broker is down.
    options = client_options(config, url)
    if is_sentinel(url):
        sentinel = Sentinel(
            [(n.host, n.port) for n in sentinel_nodes(url)],
            socket_timeout=config.redis_socket_timeout,
            socket_connect_timeout=config.redis_connect_timeout,
        )
        return sentinel.master_for(config.celery_broker_sentinel_master, **options)
    if scheme(url) == SOCKET_SCHEME:
        url = socket_url(url)
    if scheme(url) not in SINGLE_SCHEMES:
        return None
    return Redis.from_url(url, **options)


def socket_url(url: str) -> str:
    """redis-py's form of kombu's `redis+socket:///path?virtual_host=N`: `unix:///path?db=N`."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query)
    query = [("db" if key == "virtual_host" else key, value) for key, value in query]
    tail = f"?{urllib.parse.urlencode(query)}" if query else ""
    return f"{UNIX_SCHEME}://{parts.netloc}{parts.path}{tail}"
