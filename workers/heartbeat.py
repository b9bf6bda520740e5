"""Workers announce themselves in Redis every few seconds, so `/readyz` can count them."""

from __future__ import annotations

import socket
import threading

from celery.signals import worker_ready, worker_shutdown
from celery.utils.log import get_logger
from redis import RedisError

from devcmd.clock import now_ms
from workers import app
from workers.base import services

_stop = threading.Event()
log = get_logger(__name__)


def _beat(hostname: str) -> None:
    svc = services(app)
    interval = max(1.0, svc.config.worker_heartbeat_ttl / 3)
    while not _stop.is_set():
        try:
            svc.health.beat(hostname, now_ms())
        except RedisError as exc:
            log.warning("heartbeat missed: %s", exc)
        _stop.wait(interval)
    try:
        svc.health.leave(hostname)
    except RedisError as exc:  # the entry ages out of /readyz's count by itself
        log.warning("heartbeat not withdrawn: %s", exc)


@worker_ready.connect
def _start(sender=None, **_: object) -> None:
    hostname = getattr(sender, "hostname", None) or socket.gethostname()
    threading.Thread(target=_beat, args=(hostname,), name="devcmd-heartbeat", daemon=True).start()


@worker_shutdown.connect
def _finish(**_: object) -> None:
    _stop.set()
