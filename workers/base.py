"""The base class of every devcmd task: per-process services, logging context, retry policy."""

from __future__ import annotations

import redis
from celery import Celery, Task

from devcmd.broker import Broker
from devcmd.config import Config
from devcmd.services import Services

_services: Services | None = None


def services(celery: Celery) -> Services:
    """This process's Services, created on first use (after the pool has forked)."""
    global _services
    if _services is None:
        _services = Services.from_config(Config.from_env(), Broker(celery))
    return _services


class DevcmdTask(Task):
    """Retries on Redis connection trouble; everything else is the task's own decision."""

    autoretry_for = (redis.ConnectionError, redis.TimeoutError)
    retry_backoff = 1
    retry_backoff_max = 60
    retry_jitter = True
    max_retries = 20

    @property
    def svc(self) -> Services:
        return services(self.app)
