"""Celery workers: `celery -A workers worker` and `celery -A workers beat`.

Building the Celery app opens no connection; tasks build their Redis client on first use.
"""

from devcmd import connections
from devcmd.broker import make_celery
from devcmd.config import Config
from workers import lifecycle, observe  # noqa: F401  (connect logging, metrics, stop signals)

_config = Config.from_env()
connections.check(_config)  # a worker or beat with URLs devcmd cannot run with does not start
app = make_celery(_config)
app.conf.include = [
    "workers.revocations",
    "workers.notifications",
    "workers.southbound",
    "workers.heartbeat",
    "workers.retention",
]

__all__ = ["app"]
