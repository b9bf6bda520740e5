"""devcmd's background jobs by name, without Celery: the task and queue names, the depth of
the queues (read from the broker's Redis) and the `Broker` that enqueues a job by name. The
domain imports this module only; the Celery application itself is built in `devcmd.broker`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from kombu.transport.redis import PRIORITY_STEPS, Channel
from redis import Redis

from devcmd.config import Config

SWEEP = "devcmd.revocations.sweep"
FLUSH = "devcmd.notifications.flush"
DELIVER = "devcmd.notifications.deliver"
RESUME = "devcmd.revocations.resume_stalled"
DRAIN = "devcmd.notifications.drain_dirty"
TICK = "devcmd.southbound.tick"
RETRY = "devcmd.notifications.retry_due"
FORGET = "devcmd.retention.forget_due"
PURGE = "devcmd.retention.purge_deleted"

QUEUE_REVOCATIONS = "revocations"
QUEUE_CALLBACKS = "callbacks"
QUEUES = (QUEUE_REVOCATIONS, QUEUE_CALLBACKS)
REQUEST_ID_HEADER = "devcmd_request_id"


def queue_lists(queue: str) -> list[str]:
    """The Redis lists kombu keeps a queue in: the queue's name, and one list per priority step
    (`name\\x06\\x163`, ...) that fills only if messages are sent with a priority."""
    return [queue] + [f"{queue}{Channel.sep}{step}" for step in PRIORITY_STEPS if step]


def queue_limits(config: Config) -> dict[str, int]:
    """The most messages each queue may hold before /readyz (and backpressure) object."""
    return {
        QUEUE_REVOCATIONS: config.revocation_queue_limit,
        QUEUE_CALLBACKS: config.callback_queue_limit,
    }


def queue_depths(client: Redis, queues: tuple[str, ...] = QUEUES) -> dict[str, int]:
    """Messages waiting in each queue, in one round trip to the broker's Redis.

    kombu keeps a queue as Redis lists: the queue's name, and one list per priority step above
    0 (`<queue>\\x06\\x163`, ...). Messages a worker has taken but not acked (including
    countdowns it holds) are not counted. Raises redis.RedisError when the broker is unreachable.
    """
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for key in queue_lists(queue):
            pipe.llen(key)
    lengths = iter(pipe.execute())
    return {queue: sum(next(lengths) for _ in queue_lists(queue)) for queue in queues}


@dataclass(frozen=True)
class DepthReading:
    """One process's last reading of the queues' depths (`queue_depths`) and the
    `time.monotonic()` until which it may stand in for a new one (see health.queue_backlog)."""

    depths: dict[str, int] = field(default_factory=dict)
    until: float = 0.0


class Sender(Protocol):
    """What the Broker needs of a Celery application: sending a task by name."""

    def send_task(self, name: str, *args, **kwargs): ...

    def publish(self, name: str, args: list, countdown: float | None = None) -> None: ...

    def close(self) -> None: ...


class Broker:
    """Enqueues devcmd's Celery tasks by name."""

    def __init__(self, celery: Sender) -> None:
        self.celery = celery

    def close(self) -> None:
        self.celery.close()

    def sweep(self, app_id: str, device_id: str, task_id: str, countdown: float = 0) -> None:
        self.celery.publish(SWEEP, [app_id, device_id, task_id], countdown or None)

    def flush(self, app_id: str, device_id: str, countdown: float = 0) -> None:
        self.celery.publish(FLUSH, [app_id, device_id], countdown or None)

    def fan_out(self, name: str, buckets: range) -> int:
        """Send the periodic job `name` once per index bucket (its one argument), each with the
        expiry beat's own message of it has: every bucket's job is small and bounded, and the
        jobs spread over the workers (and, on a cluster, over the masters). Returns how many."""
        expires = (self.celery.conf.task_annotations or {}).get(name, {}).get("expires")
        for bucket in buckets:
            self.celery.send_task(name, args=[bucket], expires=expires)
        return len(buckets)

    def deliver(self, refs: list[list[str]]) -> None:
        """Deliver notifications named by [appId, deviceId, notificationId]."""
        self.celery.publish(DELIVER, [refs])
