"""A real HTTP callback receiver on 127.0.0.1 that records every POST it gets."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Delivery:
    """One POST as received: path, headers (lower-cased names), body raw and parsed, our answer."""

    path: str
    headers: dict[str, str]
    raw: bytes
    body: object
    status: int


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        headers = {name.lower(): value for name, value in self.headers.items()}
        status = self.server.receiver.record(self.path, headers, raw, body)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Silence the per-request stderr log."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops bursts of concurrent connects
    receiver: Receiver


class Receiver:
    """Answers 204; with `fail_first`, answers 500 to the first attempt of each `webhook-id`."""

    def __init__(self, *, fail_first: bool = False) -> None:
        self.fail_first = fail_first
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._attempts: Counter[str] = Counter()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.receiver = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def url(self, path: str = "/callbacks") -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def record(self, path: str, headers: dict[str, str], raw: bytes, body: object) -> int:
        """Store one POST and choose the status to answer."""
        with self._lock:
            webhook_id = headers.get("webhook-id", "")
            self._attempts[webhook_id] += 1
            first = self._attempts[webhook_id] == 1
            status = 500 if self.fail_first and first else 204
            self._deliveries.append(Delivery(path, headers, raw, body, status))
        return status

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
