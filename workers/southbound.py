"""Beat-driven timers: expire undelivered commands, retransmit or time out unacknowledged ones."""

from __future__ import annotations

from devcmd import broker
from devcmd.domain import southbound
from workers import app
from workers.base import DevcmdTask


@app.task(name=broker.TICK, base=DevcmdTask, bind=True)
def tick(self: DevcmdTask) -> int:
    return southbound.tick(self.svc)
