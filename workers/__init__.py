"""Celery workers: `celery -A workers worker` and `celery -A workers beat`.

Building the Celery app opens no connection; tasks build their Redis client on first use.
"""

from devcmd.broker import make_celery
from devcmd.config import Config
from workers import lifecycle, observe  # noqa: F401  (connect logging, metrics, stop signals)

app = make_celery(Config.from_env())
app.conf.include = [
    "workers.revocations",
    "workers.notifications",
    "workers.southbound",
    "workers.heartbeat",
]

__all__ = ["app"]
