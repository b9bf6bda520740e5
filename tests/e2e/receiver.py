"""A real HTTP callback receiver on 127.0.0.1 that records every POST it gets: devcmd's own
receiver kit (`devcmd.receiver`) with signature checks left to the tests (`verifier=parse`)
and no deduplication, so the tests see every attempt. Served by werkzeug's threaded server,
which speaks HTTP/1.1: the workers' connection pools keep their connections open, about twice
the callbacks per second of one connection per POST (which 50,000 callbacks need)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

from devcmd.receiver import Event, Respond, parse, wsgi_app


@dataclass(frozen=True)
class Delivery:
    """One POST as received: path, headers (lower-cased names), body raw and parsed, our answer."""

    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any
    status: int


class Receiver:
    """Answers 204; with `fail_first`, answers 500 to the first attempt of each `webhook-id`."""

    def __init__(self, *, fail_first: bool = False) -> None:
        self.fail_first = fail_first
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._attempts: Counter[str] = Counter()
        self._path = threading.local()  # the request's path, for the handler in its thread
        app = self._paths(wsgi_app(self.record, verifier=parse, dedup=None))
        self._server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def url(self, path: str = "/callbacks") -> str:
        return f"http://127.0.0.1:{self._server.server_port}{path}"

    def record(self, event: Event) -> None:
        """Store one POST and choose the answer: 204, or 500 to fail a first attempt."""
        with self._lock:
            self._attempts[event.webhook_id] += 1
            first = self._attempts[event.webhook_id] == 1
            status = 500 if self.fail_first and first else 204
            delivery = Delivery(self._path.value, event.headers, event.raw, event.body, status)
            self._deliveries.append(delivery)
        raise Respond(status)

    def deliveries(self) -> list[Delivery]:
        """Every POST so far, in arrival order."""
        with self._lock:
            return list(self._deliveries)

    def accepted(self) -> list[Delivery]:
        """The POSTs answered with 204."""
        return [d for d in self.deliveries() if d.status == 204]

    def wait_for_accepted(self, command_ids: set[str], timeout: float) -> list[Delivery]:
        """Wait until every command id has an accepted delivery; returns all accepted ones."""
        deadline = time.monotonic() + timeout
        while True:
            accepted = self.accepted()
            seen = {d.body.get("commandId") for d in accepted if isinstance(d.body, dict)}
            if command_ids <= seen or time.monotonic() > deadline:
                return accepted
            time.sleep(0.1)

    def _paths(self, app: Callable) -> Callable:
        """`app`, noting each request's path where `record` (same thread) finds it."""

        def noted(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
            self._path.value = environ.get("PATH_INFO", "")
            return app(environ, start_response)

        return noted


class _Quiet(WSGIRequestHandler):
    """No log line per request (tens of thousands in the crash test)."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass
