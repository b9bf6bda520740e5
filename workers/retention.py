"""Retention and purge: beat's bounded jobs that remove finished work and deleted applications."""

from __future__ import annotations

from celery.utils.log import get_task_logger

from devcmd import jobs
from devcmd.domain import purge, retention
from workers import app
from workers.base import DevcmdTask

log = get_task_logger(__name__)


@app.task(name=jobs.FORGET, base=DevcmdTask, bind=True)
def forget_due(self: DevcmdTask, bucket: int | None = None) -> int:
    """Beat's call (no bucket) fans out one job per index bucket; a job removes what is due in
    its bucket, at most RETENTION_BATCH commands."""
    if bucket is None:
        return self.svc.broker.fan_out(jobs.FORGET, self.svc.buckets)
    counts = retention.forget_due(self.svc, [bucket])
    if counts:
        log.info("retention: bucket %s removed %s", bucket, dict(counts))
    return sum(counts.values())


@app.task(name=jobs.PURGE, base=DevcmdTask, bind=True)
def purge_deleted(self: DevcmdTask) -> int:
    """One bounded step of every deleted application's purge."""
    counts = purge.purge_deleted(self.svc)
    if counts:
        log.info("purge: %s", dict(counts))
    return counts["keys"]
