"""A worker's stop always ends: WORKER_STOP_TIMEOUT after a SIGTERM (or SIGINT, SIGQUIT) the
worker exits even if its warm shutdown still waits for a broker that is down, and its pool
children die with it."""

from __future__ import annotations

import os

from celery.signals import worker_init, worker_process_init, worker_shutting_down

from devcmd import lifecycle
from devcmd.config import Config


@worker_shutting_down.connect
def _bound_the_stop(**_: object) -> None:
    """Sent from the worker's signal handler when a shutdown starts."""
    lifecycle.exit_within(Config.from_env().worker_stop_timeout)


@worker_process_init.connect
def _die_with_worker(**_: object) -> None:
    """A pool child whose worker is gone (killed, or forced out above) has no one to ack its
    task to: it ends too, and the task comes back through the broker's redelivery."""
    lifecycle.die_with_parent(parent=_worker[0])


@worker_init.connect
def _stop_when_orphaned(**_: object) -> None:
    """The worker whose launcher died stops too, even if the launcher's death signal was lost."""
    lifecycle.stop_when_orphaned(Config.from_env().worker_stop_timeout)


@worker_init.connect
def _remember_the_worker(**_: object) -> None:
    """The worker's main process forks the pool children, which inherit its pid from here."""
    _worker[0] = os.getpid()


_worker: list[int | None] = [None]  # the worker's main process, once it is one
