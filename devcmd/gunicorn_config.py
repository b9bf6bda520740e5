"""gunicorn settings of the web process, shared by every launcher.

Use: `gunicorn -c python:devcmd.gunicorn_config 'app:create_app()'` (devcmd run, Procfile,
docker-compose and the Dockerfile all do). Bind address and worker count come from HOST, PORT and
WEB_WORKERS through `devcmd.config`; log lines from LOG_FORMAT and LOG_LEVEL.

Metrics: every worker writes to PROMETHEUS_MULTIPROC_DIR, so `/metrics` counts all of them
whichever answers. When it is unset, the master makes a fresh directory before forking its
workers (and removes it on exit).
"""

import os
import shutil
import tempfile

from devcmd import logs
from devcmd.config import Config

_config = Config.from_env()

bind = f"{_config.host}:{_config.port}"
workers = _config.web_workers
# Threads per worker (gthread): a request waiting on Redis leaves the CPU to another one of the
# same process; WEB_THREADS=1 gives plain sync workers.
worker_class = "gthread" if _config.web_threads > 1 else "sync"
threads = _config.web_threads
# OceanConnect clients send `app_key`; gunicorn >= 22 drops headers with underscores unless told
# otherwise. Mapping it is safe here: app_key only names the application, which must match the
# bearer token's own application.
header_map = "dangerous"
# gunicorn >= 25 opens a control socket in $HOME by default, shared by every gunicorn there.
control_socket_disable = True
timeout = 30
graceful_timeout = 15
keepalive = 5
# Recycle each worker after about 100,000 requests (jittered so they do not restart together):
# a slow leak in any library cannot grow without bound. Not every 10,000: at the rates this
# service serves, a worker then restarted every few seconds, each boot costing 0.2-0.35 s of
# CPU (about 30 us a request on average, 7% of a bare request, and a stall in whichever second
# it lands), and each dead worker leaves its counter files in the metrics directory, which every
# /metrics scrape reads (docs/performance.md).
max_requests = 100_000
max_requests_jitter = 10_000
# Worker heartbeat files on tmpfs: on a container's overlay filesystem a stalled disk write can
# make the arbiter kill healthy workers.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
# Requests are small JSON documents: refuse oversized request lines and headers early.
limit_request_line = 8190
limit_request_fields = 100
# The app logs each request itself (route, status, duration, request id); gunicorn's own lines
# go through the same handler.
logconfig_dict = logs.dict_config(_config.log_format, _config.log_level)

_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
_made_dir: list[str] = []


def on_starting(server) -> None:
    """Give the workers a metrics directory before the first fork."""
    if not os.environ.get(_METRICS_DIR):
        _made_dir.append(tempfile.mkdtemp(prefix="devcmd-metrics-"))
        os.environ[_METRICS_DIR] = _made_dir[0]
    os.makedirs(os.environ[_METRICS_DIR], exist_ok=True)


def child_exit(server, worker) -> None:
    """A dead worker's live gauges leave the scrape; its counters keep counting, folded into
    the directory's archive files (devcmd.metrics_files) so recycled workers' files do not pile
    up."""
    # Imported here, after on_starting: a module the master imports before the directory is in
    # the environment would hand its forked workers single-process metrics.
    from prometheus_client import multiprocess

    from devcmd import metrics_files

    multiprocess.mark_process_dead(worker.pid)
    metrics_files.fold(worker.pid, os.environ[_METRICS_DIR])


def on_exit(server) -> None:
    for path in _made_dir:
        shutil.rmtree(path, ignore_errors=True)
