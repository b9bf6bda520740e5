"""Callback delivery: drain outboxes into delivery tasks, deliver concurrently, run due retries."""

from __future__ import annotations

from celery.signals import worker_process_shutdown
from celery.utils.log import get_task_logger

from devcmd import jobs
from devcmd.domain import delivery, notifications
from workers import app
from workers.base import DevcmdTask

log = get_task_logger(__name__)
_sender: delivery.Sender | None = None


def sender() -> delivery.Sender:
    """One sender (thread pool, keep-alive sessions) per worker process, made after the fork."""
    global _sender  # one per worker process, by design
    if _sender is None:
        _sender = delivery.Sender()
    return _sender


@worker_process_shutdown.connect
def _close_sender(**_: object) -> None:
    if _sender is not None:
        _sender.close()


@app.task(name=jobs.FLUSH, base=DevcmdTask, bind=True, max_retries=300)
def flush(self: DevcmdTask, app_id: str, device_id: str) -> None:
    if not notifications.flush(self.svc, app_id, device_id):
        raise self.retry(countdown=1)


@app.task(name=jobs.DELIVER, base=DevcmdTask, bind=True)
def deliver(self: DevcmdTask, refs: list[list[str]]) -> dict[str, int]:
    counts = delivery.deliver(self.svc, sender(), refs)
    log.info("callbacks: %s", counts)
    return counts


@app.task(name=jobs.RETRY, base=DevcmdTask, bind=True)
def retry_due(self: DevcmdTask, bucket: int | None = None) -> int:
    """Beat's call (no bucket) fans out one job per index bucket; a job claims its bucket."""
    if bucket is None:
        return self.svc.broker.fan_out(jobs.RETRY, self.svc.buckets)
    return notifications.retry_due(self.svc, [bucket])


@app.task(name=jobs.DRAIN, base=DevcmdTask, bind=True)
def drain_dirty(self: DevcmdTask, bucket: int | None = None) -> int:
    """Beat's call (no bucket) fans out one job per index bucket; a job drains its bucket."""
    if bucket is None:
        return self.svc.broker.fan_out(jobs.DRAIN, self.svc.buckets)
    return notifications.drain_dirty(self.svc, [bucket])
