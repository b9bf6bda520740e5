"""Revocation sweeps: each task runs a few seconds of batches, then re-enqueues itself."""

from __future__ import annotations

from celery.utils.log import get_task_logger

from devcmd import errors, jobs
from devcmd.domain import revocations
from workers import app
from workers.base import DevcmdTask

log = get_task_logger(__name__)


@app.task(name=jobs.SWEEP, base=DevcmdTask, bind=True)
def sweep(self: DevcmdTask, app_id: str, device_id: str, task_id: str) -> None:
    try:
        batch = revocations.sweep(self.svc, app_id, device_id, task_id)
    except errors.TaskNotFound:
        log.warning("revocation task %s/%s/%s not found; dropped", app_id, device_id, task_id)
        return
    log.info("task %s %s: %d/%d cancelled", task_id, batch.status, batch.cancelled, batch.total)
    if not batch.done:
        self.svc.broker.sweep(app_id, device_id, task_id)


@app.task(name=jobs.RESUME, base=DevcmdTask, bind=True)
def resume_stalled(self: DevcmdTask, bucket: int | None = None) -> int:
    """Beat's call (no bucket) fans out one job per index bucket; a job resumes its bucket."""
    if bucket is None:
        return self.svc.broker.fan_out(jobs.RESUME, self.svc.buckets)
    return revocations.resume_stalled(self.svc, [bucket])
