"""Prometheus counters and histograms of web and workers (the domain counts into them).

They live in prometheus_client's multiprocess files when PROMETHEUS_MULTIPROC_DIR is set (it
must be set before the process starts: gunicorn's workers, Celery's pool children and the web
then write to and read from one directory per machine). What a scrape answers, with the
service-wide gauges read from Redis at that moment, is built in `devcmd.scrape`.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "devcmd_http_requests_total",
    "HTTP requests answered, by method (or other), route (the URL rule) and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "devcmd_http_request_duration_seconds",
    "Time to answer an HTTP request, by method (or other) and route.",
    ["method", "route"],
)
TASKS_CREATED = Counter(
    "devcmd_revocation_tasks_created_total", "Revocation tasks opened through the API."
)
TASKS_FINISHED = Counter(
    "devcmd_revocation_tasks_finished_total",
    "Revocation tasks whose sweep ended, by final status.",
    ["status"],
)
SWEEP_DURATION = Histogram(
    "devcmd_sweep_duration_seconds",
    "Duration of one sweep step (a Celery task running batches for up to SWEEP_STEP_SECONDS).",
)
COMMANDS_REVOKED = Counter(
    "devcmd_commands_revoked_total", "Commands cancelled by revocation sweeps."
)
CALLBACK_ATTEMPTS = Counter(
    "devcmd_callback_attempts_total",
    "Callback delivery attempts, by outcome (delivered, retrying, failed, stopped, refused).",
    ["outcome"],
)
CALLBACK_DURATION = Histogram(
    "devcmd_callback_duration_seconds",
    "Time of one callback POST, connection included (refused targets are not contacted).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
