"""A worker's stop always ends: WORKER_STOP_TIMEOUT after a SIGTERM (or SIGINT, SIGQUIT) the
worker exits even if its warm shutdown still waits for a broker that is down, and its pool
children die with it."""

from __future__ import annotations

import os
from dataclasses import dataclass

from celery.signals import worker_init, worker_process_init, worker_shutting_down

from devcmd import lifecycle
from devcmd.config import Config


@dataclass
class _MainProcess:
    """The worker's main process, once it is one; its pool children inherit this."""

    pid: int | None = None
    deadline: lifecycle.Deadline | None = None


_worker = _MainProcess()


@worker_init.connect
def _prepare(**_: object) -> None:
    """Before any stop: the deadline of a stop waits already, and the pool children (forked
    from here) will know their parent's pid. The worker whose launcher died stops too, even
    if the launcher's death signal was lost."""
    seconds = Config.from_env().worker_stop_timeout
    _worker.pid = os.getpid()
    _worker.deadline = lifecycle.Deadline(seconds)
    lifecycle.stop_when_orphaned(seconds)


@worker_shutting_down.connect
def _bound_the_stop(**_: object) -> None:
    """Sent from the worker's signal handler when a shutdown starts: nothing here may wait."""
    if _worker.deadline is not None:
        _worker.deadline.start()
    else:  # a worker that skipped worker_init
        lifecycle.exit_within(Config.from_env().worker_stop_timeout)


@worker_process_init.connect
def _die_with_worker(**_: object) -> None:
    """A pool child whose worker is gone (killed, or forced out above) has no one to ack its
    task to: it ends too, and the task comes back through the broker's redelivery."""
    lifecycle.die_with_parent(parent=_worker.pid)
