"""One object per process that holds the Redis client, the broker and the stores built on them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from redis import Redis
from redis.cluster import RedisCluster

from devcmd import connections
from devcmd.config import Config
from devcmd.jobs import Broker, DepthReading
from devcmd.store import layout
from devcmd.store.auth import AppStore, TokenStore
from devcmd.store.commands import CommandStore
from devcmd.store.devices import DeviceStore
from devcmd.store.health import HealthStore
from devcmd.store.idempotency import IdempotencyStore
from devcmd.store.notifications import NotificationStore, OutboxStore
from devcmd.store.purge import PurgeStore
from devcmd.store.replication import Replicas
from devcmd.store.retention import RetentionStore
from devcmd.store.revocations import RevocationStore
from devcmd.store.scripts import Scripts
from devcmd.store.southbound import SouthboundStore


def redis_client(url: str, config: Config, **options) -> Redis | RedisCluster:
    """A client of the data store at `url` (one server or a cluster) that never hangs: see
    `connections.client_options`."""
    return connections.make_redis(url, **connections.client_options(config, url), **options)


@dataclass
class Services:
    """What a domain function needs: configuration, stores and a way to enqueue work."""

    config: Config
    redis: Redis | RedisCluster
    broker: Broker

    @classmethod
    def from_config(cls, config: Config, broker: Broker | None = None) -> Services:
        if not config.redis_url:
            raise RuntimeError("REDIS_URL is not set (devcmd run sets it for its processes)")
        connections.check(config)
        redis = redis_client(config.redis_url, config, decode_responses=True)
        layout.ensure(redis, config.index_buckets)
        if broker is None:
            # Imported here: the domain imports Services, and must not import Celery with it.
            from devcmd.broker import make_celery

            broker = Broker(make_celery(config))
        return cls(config, redis, broker)

    def close(self) -> None:
        """Release the Redis and broker connections (CLI commands and tests end with this)."""
        if self.__dict__.get("broker_redis") not in (None, self.redis):
            self.broker_redis.close()
        self.redis.close()
        self.broker.close()

    @cached_property
    def broker_redis(self) -> Redis | None:
        """A client of the Redis holding Celery's queues (to read their depth): the data store's
        unless CELERY_BROKER_URL names another Redis, or the current master of a Sentinel set."""
        url = self.config.celery_broker_url
        if not url or url == self.config.redis_url:
            return self.redis
        return connections.make_broker_redis(self.config)

    @cached_property
    def queue_reading(self) -> DepthReading:
        """This process's last reading of the queues' depths (health.queue_backlog replaces it)."""
        return DepthReading()

    @property
    def buckets(self) -> range:
        """Every bucket of the global indexes (INDEX_BUCKETS): what beat fans out over."""
        return range(self.config.index_buckets)

    @cached_property
    def scripts(self) -> Scripts:
        return Scripts(self.redis)

    @cached_property
    def apps(self) -> AppStore:
        return AppStore(self.redis)

    @cached_property
    def tokens(self) -> TokenStore:
        return TokenStore(self.redis, self.scripts)

    @cached_property
    def devices(self) -> DeviceStore:
        return DeviceStore(self.redis, self.scripts)

    @cached_property
    def health(self) -> HealthStore:
        return HealthStore(self.redis, self.config.index_buckets)

    @cached_property
    def idempotency(self) -> IdempotencyStore:
        return IdempotencyStore(self.redis, self.scripts)

    @cached_property
    def commands(self) -> CommandStore:
        return CommandStore(self.redis, self.scripts, self.config.index_buckets)

    @cached_property
    def revocations(self) -> RevocationStore:
        return RevocationStore(
            self.redis,
            self.scripts,
            self.config.index_buckets,
            replicas=self.replicas,
        )

    @cached_property
    def replicas(self) -> Replicas:
        """REDIS_MIN_REPLICAS_ACK for the answers that promise a command's fate (a revocation
        task's fence waits in the pipeline that writes it: RevocationStore)."""
        return Replicas(
            self.redis,
            self.config.redis_min_replicas_ack,
            int(self.config.redis_replica_ack_timeout * 1000),
        )

    @cached_property
    def southbound(self) -> SouthboundStore:
        return SouthboundStore(self.redis, self.scripts, self.config.index_buckets)

    @cached_property
    def notifications(self) -> NotificationStore:
        return NotificationStore(self.redis, self.scripts, self.config.index_buckets)

    @cached_property
    def retention(self) -> RetentionStore:
        return RetentionStore(self.redis, self.scripts, self.config.index_buckets)

    @cached_property
    def purge(self) -> PurgeStore:
        return PurgeStore(self.redis, self.config.index_buckets)

    @cached_property
    def outbox(self) -> OutboxStore:
        return OutboxStore(self.redis, self.scripts, self.config.index_buckets)
