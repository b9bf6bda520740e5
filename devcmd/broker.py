"""The Celery application factory: the web process builds a Celery app with no tasks and only
sends by name (`devcmd.jobs.Broker`), so `app/` never imports `workers/`; the worker process
builds the same app and registers the tasks on it.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cached_property

from celery import Celery
from celery.signals import before_task_publish
from kombu import Connection, Producer
from kombu.transport import redis as kombu_redis
from kombu.transport.redis import Channel
from kombu.utils.uuid import uuid
from redis import ConnectionError as RedisConnectionError
from redis import Redis

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


class DevcmdCelery(Celery):
    """Celery with `publish`: devcmd's hot enqueues (a sweep, a flush, a delivery) sent as
    `send_task` sends them, through one kombu producer per thread (see `Publisher`)."""

    @cached_property
    def publisher(self) -> Publisher:
        return Publisher(self)

    def publish(self, name: str, args: list, countdown: float | None = None) -> None:
        """Send the task `name` with `args` (after `countdown` seconds)."""
        self.publisher.send(name, args, countdown)

    def close(self) -> None:
        if "publisher" in self.__dict__:
            self.publisher.close()
        super().close()


def make_celery(config: Config) -> DevcmdCelery:
    """A Celery app configured for at-least-once, crash-safe work on Redis."""
    _survive_close_after_loss()
    celery = DevcmdCelery("devcmd", broker=config.broker_url)
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


class Publisher:
    """Sends a task the way Celery's `send_task` does, message for message: Celery builds the
    message (`amqp.create_task_message`), routes it (`task_routes`) and publishes it with its
    retry policy and its publish signals (`amqp.send_task_message`), so the worker gets what it
    always got, on the same queue. What is left out is what cost a request about 0.2 ms of CPU:
    a producer taken from and returned to Celery's pool per call, the queue's declaration
    checked per call (here once per thread and queue), the AsyncResult nobody reads, the
    redis-py client kombu builds for every message (see `_ReusedClient`), the route looked up
    again for every message (kept per task name: `task_routes` routes by name) and Celery's
    `saferepr` of the arguments for the message's `argsrepr` header (Python's `repr` of them
    instead, which escapes what saferepr leaves raw; arguments whose repr is longer than
    `argsrepr_maxsize` still go through saferepr, which shortens them). About 0.25 ms in all.

    One kombu connection and producer per thread and process: a kombu channel is not shared
    between threads, and a forked child makes its own.
    """

    def __init__(self, celery: Celery) -> None:
        self.celery = celery
        self._local = threading.local()
        self._lock = threading.Lock()
        # Per task name, where `task_routes` sends it: devcmd routes by name alone.
        self._routes: dict[str, dict] = {}
        # Weak: a thread that ends drops its connection with its thread-local state.
        self._connections: weakref.WeakSet[Connection] = weakref.WeakSet()

    def send(self, name: str, args: list, countdown: float | None = None) -> None:
        """Publish one task; raises kombu's OperationalError when the broker refuses it after
        the retry policy (`task_publish_retry_policy`), as `send_task` does."""
        celery, amqp = self.celery, self.celery.amqp
        options = self._routes.get(name)
        if options is None:
            options = self._routes.setdefault(name, amqp.router.route({}, name, args, None))
        argsrepr = repr(args)
        parent = celery.current_worker_task  # a task enqueued by a task names it, as Celery does
        root_id = parent and (parent.request.root_id or parent.request.id)
        message = amqp.create_task_message(
            uuid(),
            name,
            args,
            None,
            countdown,
            reply_to=celery.thread_oid,
            create_sent_event=celery.conf.task_send_sent_event,
            root_id=root_id,
            parent_id=parent and parent.request.id,
            ignore_result=None,
            # Celery's saferepr of the arguments cost a publish about a fifth of its CPU: a
            # plain repr instead, but for arguments long enough for saferepr to shorten.
            argsrepr=argsrepr if len(argsrepr) <= amqp.argsrepr_maxsize else None,
            kwargsrepr="{}",
            **options,
        )
        producer, declared = self._producer()
        queue = options["queue"]
        declare = [] if queue.name in declared else [queue]
        try:
            with producer.connection._reraise_as_library_errors():
                amqp.send_task_message(producer, name, message, declare=declare, **options)
        except Exception:
            # kombu closed the connection's channels when it gave up: the next call starts on
            # a new one, as Celery's pool hands out a fresh producer after a failure.
            self._drop(producer)
            raise
        declared.add(queue.name)

    def _producer(self) -> tuple[Producer, set[str]]:
        """This thread's producer and the queues it declared, made on first use."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            # Celery's connection, settings and all, as one whose transports (a new one after
            # each reconnection) make channels that reuse their client.
            connection = _PublishingConnection(**self.celery.connection_for_write().info())
            local.producer = self.celery.amqp.Producer(connection, auto_declare=False)
            local.declared, local.pid = set(), os.getpid()
            with self._lock:
                self._connections.add(connection)
        return local.producer, local.declared

    def _drop(self, producer: Producer) -> None:
        """Forget this thread's producer and release its connection."""
        self._local.pid = None
        with self._lock:
            self._connections.discard(producer.connection)
        with suppress(Exception):  # already broken: its release may fail too
            producer.connection.release()

    def close(self) -> None:
        """Release every thread's broker connection."""
        with self._lock:
            connections, self._connections = list(self._connections), weakref.WeakSet()
        for connection in connections:
            connection.release()
        self._local = threading.local()


class _ReusedClient:
    """kombu's Redis channel builds a new redis-py client for each message it puts (about
    0.1 ms of CPU: a client copies its ~170 response callbacks when made); this keeps one per
    channel, on the channel's own connection pool (a new one if the channel replaced its pool,
    e.g. after a fork). redis-py takes a connection from the pool per command."""

    _publishing_client: Redis | None = None

    @contextmanager
    def conn_or_acquire(self, client: Redis | None = None) -> Iterator[Redis]:
        if client is not None:
            yield client
            return
        pool = self.pool
        reused = self._publishing_client
        if reused is None or reused.connection_pool is not pool:
            reused = self._publishing_client = self._create_client()
        yield reused


class _PublishingChannel(_ReusedClient, kombu_redis.Channel):
    """kombu's Redis channel with one client for its puts."""


class _PublishingSentinelChannel(_ReusedClient, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel with one client for its puts."""


# The channel the publishing connections make, by the transport the broker URL chose; other
# transports keep their own.
_CHANNELS = {
    kombu_redis.Transport: _PublishingChannel,
    kombu_redis.SentinelTransport: _PublishingSentinelChannel,
}


class _PublishingConnection(Connection):
    """A kombu connection whose Redis transports make `_ReusedClient` channels."""

    def create_transport(self):
        transport = super().create_transport()
        channel = _CHANNELS.get(type(transport))
        if channel is not None:
            transport.Channel = channel
        return transport


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
