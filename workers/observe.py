"""Logging and metrics of Celery worker processes: devcmd's log format (LOG_FORMAT), multiprocess
metrics bookkeeping, and an optional exporter for a machine without a web process."""

from __future__ import annotations

import logging
import os

from celery.signals import setup_logging, worker_init, worker_process_shutdown
from prometheus_client import CollectorRegistry, multiprocess, start_http_server

from devcmd import logs, metrics_files
from devcmd.config import Config

log = logging.getLogger(__name__)


@setup_logging.connect
def _configure_logging(loglevel: int | None = None, **_: object) -> None:
    """Replace Celery's logging setup with devcmd's (`--loglevel` wins over LOG_LEVEL)."""
    config = Config.from_env()
    logs.configure(config.log_format, loglevel or config.log_level)


@worker_process_shutdown.connect
def _mark_dead(pid: int | None = None, **_: object) -> None:
    """A pool child going away: its live gauges leave, its counts are folded into the
    directory's archive files (devcmd.metrics_files), so replaced children's files do not pile
    up."""
    path = Config.from_env().prometheus_multiproc_dir
    if path:
        multiprocess.mark_process_dead(pid or os.getpid(), path)
        metrics_files.fold(pid or os.getpid(), path)


@worker_init.connect
def _serve_metrics(**_: object) -> None:
    """With WORKER_METRICS_PORT, the worker's main process serves its machine's multiprocess
    directory on that port (for worker machines no web process scrapes)."""
    config = Config.from_env()
    if not config.worker_metrics_port:
        return
    if not config.prometheus_multiproc_dir:
        log.error("WORKER_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR; not serving metrics")
        return
    registry = CollectorRegistry()
    metrics_files.Collector(registry, path=config.prometheus_multiproc_dir)
    start_http_server(config.worker_metrics_port, addr=config.host, registry=registry)
    log.info("serving metrics on %s:%d", config.host, config.worker_metrics_port)
