"""Flow control with flask-limiter, its counters in the data store's Redis so every gunicorn
worker on every machine shares them:

- `northbound`: an application's authenticated API calls per minute (both dialects together),
  counted against the caller (`app_key`), also when it acts for another application;
  `RATE_LIMIT_PER_MINUTE` (60,000; `0` = unlimited), or the application's own limit
  (`devcmd apps set-limit`), read with the caller's record on every call so a change takes
  effect at once on every process;
- `login`: failed logins and token refreshes per client address and appId
  (`LOGIN_FAILURES_PER_MINUTE`), to slow secret guessing without throttling good logins.

Over a limit flask-limiter raises RateLimitExceeded, which `app.errors` renders (403 1010009).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import Flask, current_app, g, request
from flask.wrappers import Response
from flask_limiter import Limiter, RouteLimit

from app.schemas import form_or_json
from devcmd import connections
from devcmd.services import Services

EXTENSION = "devcmd.flow"
STORAGE_PREFIX = "dc:limits"


def caller() -> str:
    """The application whose credentials made the call (set by `app.context.acting_for`)."""
    return g.caller.caller_id


def login_key() -> str:
    """Client address and the appId it tries; behind a proxy, the address is the proxy's unless
    the proxy's forwarded-for header is trusted (gunicorn `forwarded_allow_ips`)."""
    app_id = form_or_json().get("appId")
    return f"{request.remote_addr}|{app_id if isinstance(app_id, str) else ''}"


def failed(response: Response) -> bool:
    """A login or refresh that did not yield tokens counts against the login limit."""
    return response.status_code >= 400


def limiter_storage(svc: Services) -> dict:
    """Where the Limiter keeps its counters: the data store, so every process shares one budget
    per application. A single Redis shares the data store's connection pool; on a cluster the
    `limits` package opens its own RedisCluster client from the same seed nodes (its counters
    are hash-tagged per caller, so they spread over the masters)."""
    url = svc.config.redis_url
    if connections.is_cluster(url):
        return {"storage_uri": url, "storage_options": {"key_prefix": STORAGE_PREFIX}}
    return {
        "storage_uri": "redis://",
        "storage_options": {
            "connection_pool": svc.redis.connection_pool,
            "key_prefix": STORAGE_PREFIX,
        },
    }


class FlowControl:
    """One per Flask app: the Limiter and the two limits devcmd applies."""

    def __init__(self, app: Flask, svc: Services) -> None:
        self.svc = svc
        # Registered before the Limiter's own hook, so it runs after it (Flask runs them reversed).
        app.after_request(self.retry_after_on_refusals_only)
        self.limiter = Limiter(
            caller,
            app=app,
            **limiter_storage(svc),
            strategy="sliding-window-counter",
            headers_enabled=True,
            retry_after="delta-seconds",
        )
        self.limits: dict[str, RouteLimit] = {
            "northbound": self.limiter.shared_limit(self.northbound_limit, scope="northbound"),
            "login": self.limiter.shared_limit(
                self.login_limit, scope="login", key_func=login_key, deduct_when=failed
            ),
        }
        self._limited: dict[tuple[str, Callable], Callable] = {}

    def per_minute(self) -> int:
        """The caller's calls per minute: its own limit if set (read with its record when the
        call was authenticated), else RATE_LIMIT_PER_MINUTE; 0 means unlimited."""
        return g.caller.rate_limit or self.svc.config.rate_limit_per_minute

    def northbound_limit(self) -> str:
        return f"{self.per_minute()}/minute"

    def login_limit(self) -> str:
        return f"{self.svc.config.login_failures_per_minute}/minute"

    def retry_after_on_refusals_only(self, response: Response) -> Response:
        """flask-limiter writes Retry-After on every answer, and overrides a refusal's own (503
        congestion, `g.retry_after`) with its window: keep it where it means something."""
        current = self.limiter.current_limit
        if g.get("retry_after") is not None:
            response.headers["Retry-After"] = str(g.retry_after)
        elif not (current and current.breached):
            response.headers.pop("Retry-After", None)
        return response

    def call(self, kind: str, view: Callable, *args, **kwargs):
        """Run `view` under the limit `kind`; raises RateLimitExceeded over it. With no
        northbound limit (0) the limiter is not asked at all: no Redis round trip."""
        if kind == "northbound" and not self.per_minute():
            return view(*args, **kwargs)
        limited = self._limited.get((kind, view))
        if limited is None:
            limited = self._limited.setdefault((kind, view), self.limits[kind](view))
        return limited(*args, **kwargs)


def flow() -> FlowControl:
    return current_app.extensions[EXTENSION]


def limited(kind: str):
    """Count calls of the decorated view against the limit `kind` (`login`)."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            return flow().call(kind, view, *args, **kwargs)

        return wrapper

    return decorate
