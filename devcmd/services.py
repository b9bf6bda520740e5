"""One object per process that holds the Redis client, the broker and the stores built on them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from redis import Redis

from devcmd.broker import Broker, make_celery
from devcmd.config import Config
from devcmd.store.auth import AppStore, TokenStore
from devcmd.store.commands import CommandStore
from devcmd.store.devices import DeviceStore
from devcmd.store.health import HealthStore
from devcmd.store.notifications import NotificationStore, OutboxStore
from devcmd.store.revocations import RevocationStore
from devcmd.store.scripts import Scripts
from devcmd.store.southbound import SouthboundStore


@dataclass
class Services:
    """What a domain function needs: configuration, stores and a way to enqueue work."""

    config: Config
    redis: Redis
    broker: Broker
    broker_redis: Redis | None = None
    """The broker's Redis, read for queue depths: `redis` itself unless CELERY_BROKER_URL
    names another server."""

    def __post_init__(self) -> None:
        self.broker_redis = self.broker_redis or self.redis

    @classmethod
    def from_config(cls, config: Config, broker: Broker | None = None) -> Services:
        if not config.redis_url:
            raise RuntimeError("REDIS_URL is not set (devcmd run sets it for its processes)")
        redis = Redis.from_url(config.redis_url, decode_responses=True, health_check_interval=10)
        broker_redis = None
        if config.broker_url != config.redis_url:
            broker_redis = Redis.from_url(
                config.broker_url, socket_connect_timeout=2, socket_timeout=2
            )
        return cls(config, redis, broker or Broker(make_celery(config)), broker_redis)

    def close(self) -> None:
        """Release the Redis and broker connections (CLI commands and tests end with this)."""
        self.redis.close()
        if self.broker_redis is not self.redis:
            self.broker_redis.close()
        self.broker.close()

    @cached_property
    def scripts(self) -> Scripts:
        return Scripts(self.redis)

    @cached_property
    def apps(self) -> AppStore:
        return AppStore(self.redis)

    @cached_property
    def tokens(self) -> TokenStore:
        return TokenStore(self.redis)

    @cached_property
    def devices(self) -> DeviceStore:
        return DeviceStore(self.redis, self.scripts)

    @cached_property
    def health(self) -> HealthStore:
        return HealthStore(self.redis)

    @cached_property
    def commands(self) -> CommandStore:
        return CommandStore(self.redis, self.scripts)

    @cached_property
    def revocations(self) -> RevocationStore:
        return RevocationStore(self.redis, self.scripts)

    @cached_property
    def southbound(self) -> SouthboundStore:
        return SouthboundStore(self.redis, self.scripts)

    @cached_property
    def notifications(self) -> NotificationStore:
        return NotificationStore(self.redis, self.scripts)

    @cached_property
    def outbox(self) -> OutboxStore:
        return OutboxStore(self.redis)
