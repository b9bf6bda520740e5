"""Per-request observability: the request id (taken from `X-Request-Id` or made, answered on
every response), the logging context, one access log line and the HTTP metrics."""

from __future__ import annotations

import logging
import time
from functools import cache

from flask import Flask, Response, g, request
from prometheus_client import Counter, Histogram

from devcmd import logs, metrics

REQUEST_ID_HEADER = "X-Request-Id"
UNMATCHED = "<unmatched>"  # the route label of a request no URL rule matched (404, 405)
# The method label takes these as sent and every other method as OTHER_METHOD: a client sending
# made-up methods must not add a series (and a cache entry below) for each.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"

access_log = logging.getLogger("devcmd.access")


def register(app: Flask) -> None:
    """Install the hooks on `app` (error answers go through them too)."""
    app.before_request(_begin)
    app.after_request(_finish)
    app.teardown_request(_forget)


def _begin() -> None:
    g.started = time.perf_counter()
    g.request_id = logs.accept_request_id(request.headers.get(REQUEST_ID_HEADER))
    logs.start(request_id=g.request_id)


def _finish(response: Response) -> Response:
    # The request and g once each: every access through Flask's proxies costs a lookup.
    current, state = request._get_current_object(), g._get_current_object()
    response.headers[REQUEST_ID_HEADER] = state.get("request_id") or logs.accept_request_id(None)
    rule, method, path, status = (
        current.url_rule,
        current.method,
        current.path,
        response.status_code,
    )
    route = rule.rule if rule else UNMATCHED
    label = method if method in METHODS else OTHER_METHOD
    seconds = time.perf_counter() - state.get("started", time.perf_counter())
    _counter(label, route, status).inc()
    _histogram(label, route).observe(seconds)
    access_log.info(
        "%s %s %d",
        method,
        path,
        status,
        extra={
            "method": method,
            "path": path,  # never the query string or headers: no credentials in logs
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
        },
    )
    return response


@cache
def _counter(method: str, route: str, status: int) -> Counter:
    """The request counter of one (method, route, status): prometheus_client's `labels` checks
    and joins its arguments on every call, so each route's child is looked up once. Methods are
    the standard ones (and one label for the rest), routes the app's URL rules (and one label
    for unmatched paths): the cache holds no more than the metric's own children."""
    return metrics.HTTP_REQUESTS.labels(method, route, str(status))


@cache
def _histogram(method: str, route: str) -> Histogram:
    """The duration histogram of one (method, route), looked up once (see `_counter`)."""
    return metrics.HTTP_DURATION.labels(method, route)


def _forget(_exc: BaseException | None) -> None:
    logs.start()
