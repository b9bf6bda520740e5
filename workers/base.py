"""The base class of every devcmd task: per-process services, logging context, retry policy."""

from __future__ import annotations

import inspect

from celery import Celery, Task

from devcmd import faults, logs
from devcmd.config import Config
from devcmd.jobs import REQUEST_ID_HEADER, Broker
from devcmd.services import Services

_services: Services | None = None
LOGGED_ARGUMENTS = ("app_id", "device_id", "task_id")  # task_id: a revocation task's id


def services(celery: Celery) -> Services:
    """This process's Services, created on first use (after the pool has forked)."""
    global _services
    if _services is None:
        _services = Services.from_config(Config.from_env(), Broker(celery))
    return _services


class DevcmdTask(Task):
    """Runs with a logging context (the request id the task was sent with, its Celery task id
    and name, and its app_id, device_id and task_id arguments); retries on Redis connection
    trouble (down, timing out, loading, read-only, out of memory); everything else is the
    task's own decision."""

    autoretry_for = faults.UNAVAILABLE
    retry_backoff = 1
    retry_backoff_max = 60
    retry_jitter = True
    max_retries = 20

    @property
    def svc(self) -> Services:
        return services(self.app)

    def __call__(self, *args, **kwargs):
        with logs.bound(
            request_id=self.request.get(REQUEST_ID_HEADER),
            celery_task_id=self.request.id,
            task_name=self.name,
            **self._logged_arguments(args, kwargs),
        ):
            return super().__call__(*args, **kwargs)

    def _logged_arguments(self, args: tuple, kwargs: dict) -> dict[str, str]:
        try:
            bound = inspect.signature(self.run).bind_partial(*args, **kwargs).arguments
        except TypeError:  # Celery reports the wrong arguments itself
            return {}
        return {name: str(bound[name]) for name in LOGGED_ARGUMENTS if name in bound}
