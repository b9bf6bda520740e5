"""The Celery application factory and the one small function family that enqueues work by name.

The web process builds a Celery app with no tasks and only sends by name, so `app/` never imports
`workers/`; the worker process builds the same app and registers the tasks on it.
"""

from __future__ import annotations

from celery import Celery
from celery.signals import before_task_publish
from kombu.transport.redis import PRIORITY_STEPS, Channel
from redis import Redis

from devcmd import logs
from devcmd.config import Config

SWEEP = "devcmd.revocations.sweep"
FLUSH = "devcmd.notifications.flush"
DELIVER = "devcmd.notifications.deliver"
RESUME = "devcmd.revocations.resume_stalled"
DRAIN = "devcmd.notifications.drain_dirty"
TICK = "devcmd.southbound.tick"
RETRY = "devcmd.notifications.retry_due"

QUEUE_REVOCATIONS = "revocations"
QUEUE_CALLBACKS = "callbacks"
QUEUES = (QUEUE_REVOCATIONS, QUEUE_CALLBACKS)
REQUEST_ID_HEADER = "devcmd_request_id"


def queue_lists(queue: str) -> list[str]:
    """The Redis lists kombu keeps a queue in: the queue's name, and one list per priority step
    (`name\\x06\\x163`, ...) that fills only if messages are sent with a priority."""
    return [queue] + [f"{queue}{Channel.sep}{step}" for step in PRIORITY_STEPS if step]


def make_celery(config: Config) -> Celery:
    """A Celery app configured for at-least-once, crash-safe work on Redis."""
    celery = Celery("devcmd", broker=config.broker_url)
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_soft_shutdown_timeout=15,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": 3600,
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
            "health_check_interval": 10,
            # Only read by kombu's sentinel:// transport: which monitored master is the broker.
            "master_name": config.celery_broker_sentinel_master,
        },
        task_default_queue=QUEUE_REVOCATIONS,
        task_routes={
            FLUSH: {"queue": QUEUE_CALLBACKS},
            DELIVER: {"queue": QUEUE_CALLBACKS},
            DRAIN: {"queue": QUEUE_CALLBACKS},
            RETRY: {"queue": QUEUE_CALLBACKS},
        },
        # A timer tick is due again a second later: never let old ones pile up behind a slow worker.
        task_annotations={
            TICK: {"expires": max(config.timer_tick_seconds * 5, 5)},
            RETRY: {"expires": 5},
        },
        beat_schedule={
            "resume-stalled-revocations": {"task": RESUME, "schedule": 15.0},
            "drain-notification-outboxes": {"task": DRAIN, "schedule": 30.0},
            "command-timers": {"task": TICK, "schedule": config.timer_tick_seconds},
            "callback-retries": {"task": RETRY, "schedule": 1.0},
        },
    )
    return celery


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


@before_task_publish.connect(dispatch_uid="devcmd-request-id")
def _carry_request_id(headers: dict | None = None, **_: object) -> None:
    """Put the request id of the request (or task) that enqueues a task in its headers, so the
    worker's log lines for it carry the same id."""
    request_id = logs.context().get("request_id")
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


class Broker:
    """Enqueues devcmd's Celery tasks by name."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def close(self) -> None:
        self.celery.close()

    def sweep(self, app_id: str, device_id: str, task_id: str, countdown: float = 0) -> None:
        self.celery.send_task(SWEEP, args=[app_id, device_id, task_id], countdown=countdown or None)

    def flush(self, app_id: str, device_id: str, countdown: float = 0) -> None:
        self.celery.send_task(FLUSH, args=[app_id, device_id], countdown=countdown or None)

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
        self.celery.send_task(DELIVER, args=[refs])
