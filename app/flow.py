"""Flow control, its counts in the data store's Redis so every gunicorn worker on every machine
shares them:

- `northbound`: an application's authenticated API calls per minute (both dialects together),
  counted against the caller (`app_key`), also when it acts for another application;
  `RATE_LIMIT_PER_MINUTE` (60,000; `0` = unlimited), or the application's own limit
  (`devcmd apps set-limit`), read from its record on every call. Counted by the same Lua
  script that checks the caller's record (`devcmd.domain.auth.admit`), in one round trip;
  this module answers over the limit (403 1010009, EnOS 99429) and writes the `X-RateLimit-*`
  headers;
- `login`: failed logins and token refreshes per client address and appId
  (`LOGIN_FAILURES_PER_MINUTE`), to slow secret guessing without throttling good logins:
  flask-limiter, whose RateLimitExceeded `app.errors` renders.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import Flask, current_app, g, request
from flask.wrappers import Response
from flask_limiter import Limiter, RouteLimit

from app.schemas import form_or_json
from devcmd import connections, errors
from devcmd.domain.auth import Budget
from devcmd.services import Services

EXTENSION = "devcmd.flow"
STORAGE_PREFIX = "dc:limits"


def login_key() -> str:
    """Client address and the appId it tries; behind a proxy, the address is the proxy's unless
    the proxy's forwarded-for header is trusted (gunicorn `forwarded_allow_ips`)."""
    app_id = form_or_json().get("appId")
    return f"{request.remote_addr}|{app_id if isinstance(app_id, str) else ''}"


def failed(response: Response) -> bool:
    """A login or refresh refused (4xx) counts against the login limit; one the service could
    not answer (5xx, e.g. Redis down) is no guess at a secret."""
    return 400 <= response.status_code < 500


def check_budget(budget: Budget) -> None:
    """Keep the budget for the answer's headers; raises Throttled if the call was refused."""
    g.budget = budget
    if budget.exhausted:
        raise errors.Throttled(
            f"Too many calls: the limit is {budget.limit} per 1 minute; see Retry-After."
        )


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
    """One per Flask app: the login Limiter, and the headers of both limits."""

    def __init__(self, app: Flask, svc: Services) -> None:
        self.svc = svc
        # Registered before the Limiter's own hook, so it runs after it (Flask runs them reversed).
        app.after_request(self.headers)
        self.limiter = Limiter(
            login_key,
            app=app,
            **limiter_storage(svc),
            strategy="sliding-window-counter",
            headers_enabled=True,
            retry_after="delta-seconds",
            # A storage failure in the limiter is logged and the call goes on: the view's own
            # Redis call then answers 503 (app.errors), and a failure while writing the limit
            # headers after a successful call cannot turn it into a 500.
            swallow_errors=True,
        )
        # The Limiter checks every request in a before_request hook, for default and
        # application-wide limits; devcmd has none (the login limit is checked by the views'
        # decorator, `limited`), so the hook only cost each request about a fifth of a bare
        # /healthz (bench.profile).
        app.before_request_funcs[None].remove(self.limiter._check_request_limit)
        self.limits: dict[str, RouteLimit] = {
            "login": self.limiter.shared_limit(
                self.login_limit, scope="login", key_func=login_key, deduct_when=failed
            ),
        }
        self._limited: dict[tuple[str, Callable], Callable] = {}

    def login_limit(self) -> str:
        return f"{self.svc.config.login_failures_per_minute}/minute"

    def headers(self, response: Response) -> Response:
        """`X-RateLimit-*` of a northbound call; Retry-After only where it means something: a
        refusal (flask-limiter writes it on every answer, and a congestion 503 sets its own,
        `g.retry_after`)."""
        budget: Budget | None = g.get("budget")
        if budget is not None and budget.limit:
            response.headers["X-RateLimit-Limit"] = str(budget.limit)
            response.headers["X-RateLimit-Remaining"] = str(budget.remaining)
            response.headers["X-RateLimit-Reset"] = str(budget.reset)
        current = self.limiter.current_limit
        if g.get("retry_after") is not None:
            response.headers["Retry-After"] = str(g.retry_after)
        elif budget is not None and budget.exhausted:
            response.headers["Retry-After"] = str(budget.retry_after)
        elif not (current and current.breached):
            response.headers.pop("Retry-After", None)
        return response

    def call(self, kind: str, view: Callable, *args, **kwargs):
        """Run `view` under the limit `kind`; raises RateLimitExceeded over it."""
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
