"""The Celery application factory: the web process builds a Celery app with no tasks and only
sends by name (`devcmd.jobs.Broker`), so `app/` never imports `workers/`; the worker process
builds the same app and registers the tasks on it.
"""

from __future__ import annotations

from celery import Celery
from celery.signals import before_task_publish
from kombu.transport.redis import Channel
from redis import ConnectionError as RedisConnectionError

from devcmd import logs
from devcmd.config import Config
from devcmd.jobs import (
    DELIVER,
    DRAIN,
    FLUSH,
    FORGET,
    PURGE,
    QUEUE_CALLBACKS,
    QUEUE_REVOCATIONS,
    REQUEST_ID_HEADER,
    RESUME,
    RETRY,
    TICK,
)


def make_celery(config: Config) -> Celery:
    """A Celery app configured for at-least-once, crash-safe work on Redis."""
    _survive_close_after_loss()
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
        # Workers and beat retry a lost broker forever (Celery's default gives up after 100
        # tries and exits): a broker outage of any length heals without a restart.
        broker_connection_max_retries=None,
        broker_connection_timeout=config.broker_connect_timeout,
        # A publish to a broker that is down fails after one quick retry instead of four tries
        # (each waiting for the connect timeout), so the web answers 503 within the timeouts.
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
        broker_transport_options={
            "visibility_timeout": 3600,
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
            "health_check_interval": config.redis_health_check_interval,
            # Above BRPOP's 1 s server-side wait, which the workers' event loop sends.
            "socket_timeout": config.broker_socket_timeout,
            "socket_connect_timeout": config.broker_connect_timeout,
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
            FORGET: {"expires": config.retention_interval},
            PURGE: {"expires": 30},
        },
        beat_schedule={
            "resume-stalled-revocations": {"task": RESUME, "schedule": 15.0},
            "drain-notification-outboxes": {"task": DRAIN, "schedule": 30.0},
            "command-timers": {"task": TICK, "schedule": config.timer_tick_seconds},
            "callback-retries": {"task": RETRY, "schedule": 1.0},
            "retention": {"task": FORGET, "schedule": config.retention_interval},
            "purge-deleted-applications": {"task": PURGE, "schedule": 30.0},
        },
    )
    return celery


def _survive_close_after_loss() -> None:
    """Work around a kombu 5.7 bug that ends a worker when its broker goes away while it holds an
    unacked message: closing the lost connection closes the channel a second time, and its
    restore of unacked messages rebuilds a connection pool from a transport already closed
    (`Transport.client` is None), raising AttributeError, which Celery treats as unrecoverable.
    A connection error instead is ignored on close, and the worker reconnects; the message comes
    back through the visibility timeout, a sweep sooner through beat's stall recovery."""
    original = Channel._connparams
    if getattr(original, "devcmd_guarded", False):
        return

    def connparams(self: Channel, asynchronous: bool = False) -> dict:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection is closed")
        return original(self, asynchronous)

    connparams.devcmd_guarded = True  # type: ignore[attr-defined]
    Channel._connparams = connparams


@before_task_publish.connect(dispatch_uid="devcmd-request-id")
def _carry_request_id(headers: dict | None = None, **_: object) -> None:
    """Put the request id of the request (or task) that enqueues a task in its headers, so the
    worker's log lines for it carry the same id."""
    request_id = logs.context().get("request_id")
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)
