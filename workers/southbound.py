"""Beat-driven timers: expire undelivered commands, retransmit or time out unacknowledged ones."""

from __future__ import annotations

from devcmd import jobs
from devcmd.domain import southbound
from workers import app
from workers.base import DevcmdTask


@app.task(name=jobs.TICK, base=DevcmdTask, bind=True)
def tick(self: DevcmdTask, bucket: int | None = None) -> int:
    """Beat's call (no bucket) fans out one job per index bucket; a job ticks its bucket."""
    if bucket is None:
        return self.svc.broker.fan_out(jobs.TICK, self.svc.buckets)
    return southbound.tick(self.svc, [bucket])
