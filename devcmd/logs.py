"""Log lines of every devcmd process: JSON (or text) on stderr, each carrying the context it was
written in (request id, Celery task id, application, device, revocation task).

The context lives in a contextvar: the web binds it per request, a worker per task, and
`before_task_publish` (devcmd.broker) carries the request id into the tasks a request enqueues.
Nothing here logs headers or bodies, so tokens, secrets and psks never reach a log line.
"""

from __future__ import annotations

import logging
import logging.config
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

FIELDS = ("request_id", "celery_task_id", "task_name", "app_id", "device_id", "task_id")
MAX_REQUEST_ID = 128
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s%(context)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(process)d %(name)s %(message)s"

_context: ContextVar[dict[str, str]] = ContextVar("devcmd_log_context")


def context() -> dict[str, str]:
    """The fields bound to this request or task so far."""
    return _context.get({})


def bind(**fields: str | None) -> None:
    """Add fields (None values are skipped) to the current context."""
    _context.set({**_context.get({}), **{k: v for k, v in fields.items() if v is not None}})


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """A fresh context holding `fields` for the duration of the block (a task, a request)."""
    token = _context.set({k: v for k, v in fields.items() if v is not None})
    try:
        yield
    finally:
        _context.reset(token)


def start(**fields: str | None) -> None:
    """Replace the context with `fields` (a request begins; the previous one is over)."""
    _context.set({k: v for k, v in fields.items() if v is not None})


def accept_request_id(value: str | None) -> str:
    """The caller's `X-Request-Id` if printable ASCII of at most 128 characters, else a new id."""
    if value and len(value) <= MAX_REQUEST_ID and value.isascii() and value.isprintable():
        return value
    return uuid.uuid4().hex


class ContextFilter(logging.Filter):
    """Copies the bound context onto every record (JSON: one key each; text: `context`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _context.get({})
        for name in FIELDS:
            if name in fields and not hasattr(record, name):
                setattr(record, name, fields[name])
        record.context = "".join(f" {k}={v}" for k, v in fields.items())
        return True


def formatter(log_format: str = "json") -> logging.Formatter:
    """devcmd's line format: one JSON object per line, or text with the context appended."""
    if log_format == "json":
        # orjson serializes the line in a fraction of the standard library's time (every
        # request writes one).
        return OrjsonFormatter(
            JSON_FIELDS,
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            reserved_attrs=[*RESERVED_ATTRS, "context"],
        )
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"LOG_FORMAT must be json or text, not {log_format!r}")


def dict_config(log_format: str = "json", level: str = "INFO") -> dict:
    """A `logging.config.dictConfig` document: the root logger writes to stderr through the
    context filter. gunicorn takes it as `logconfig_dict`; its access log is left to the app,
    which logs each request with its route and request id."""
    formatter(log_format)  # refuse an unknown format here, not in the middle of dictConfig
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"devcmd": {"()": formatter, "log_format": log_format}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "devcmd",
                "filters": ["context"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
        },
    }


def configure(log_format: str = "json", level: str | int = "INFO") -> None:
    """Send every log line of this process through devcmd's handler (Celery's setup_logging)."""
    if isinstance(level, int):
        level = logging.getLevelName(level)
    logging.config.dictConfig(dict_config(log_format, level))
