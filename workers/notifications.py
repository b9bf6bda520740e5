"""Callback delivery: drain outboxes into per-receiver batches and POST them with retries."""

from __future__ import annotations

import requests
from celery.signals import worker_process_shutdown
from celery.utils.log import get_task_logger

from devcmd import broker
from devcmd.domain import notifications
from workers import app
from workers.base import DevcmdTask

log = get_task_logger(__name__)
_session: requests.Session | None = None


def session() -> requests.Session:
    """One pooled keep-alive HTTP session per worker process."""
    global _session
    if _session is None:
        _session = requests.Session()
    return _session


@worker_process_shutdown.connect
def _close_session(**_: object) -> None:
    if _session is not None:
        _session.close()


@app.task(name=broker.FLUSH, base=DevcmdTask, bind=True, max_retries=300)
def flush(self: DevcmdTask, app_id: str, device_id: str) -> None:
    if not notifications.flush(self.svc, app_id, device_id):
        raise self.retry(countdown=1)


@app.task(name=broker.DELIVER, base=DevcmdTask, bind=True)
def deliver(self: DevcmdTask, batch: list[dict], attempt: int) -> None:
    failed = notifications.deliver(self.svc, session(), batch)
    if not failed:
        return
    if attempt >= self.svc.config.callback_max_attempts:
        log.error("giving up on %d notification(s) after %d attempts", len(failed), attempt)
        return
    delay = notifications.backoff(self.svc, attempt)
    self.svc.broker.deliver(failed, attempt + 1, countdown=delay)


@app.task(name=broker.DRAIN, base=DevcmdTask, bind=True)
def drain_dirty(self: DevcmdTask) -> int:
    return notifications.drain_dirty(self.svc)
