"""devcmd.client's retry policy against a scripted HTTP server on 127.0.0.1 (a thread): 5xx
retried with backoff, Retry-After honoured, an expired token renewed once, one Idempotency-Key
per logical call, and an unreachable service reported as Unreachable."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devcmd.client import ApiError, Client, Unreachable
from devcmd.embedded import free_port

TOKENS = {"accessToken": "t1", "refreshToken": "r1", "expiresIn": 3600, "tokenType": "bearer"}
CREATED = {"taskId": "k", "appId": "a", "deviceId": "d", "status": "WAITING", "totalCount": 0}


class Script(ThreadingHTTPServer):
    """Answers login and refresh; other calls get the scripted (status, code, headers) in turn,
    then 201 with a task. Keeps every request's path and headers."""

    def __init__(self, answers: list[tuple[int, str | None, dict[str, str]]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers = answers
        self.seen: list[tuple[str, dict[str, str]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Script

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        if self.path.endswith(("/login", "/refreshToken")):
            return self._send(200, TOKENS, {})
        if self.server.answers:
            status, code, headers = self.server.answers.pop(0)
            return self._send(status, {"error_code": code, "error_desc": "scripted"}, headers)
        return self._send(201, CREATED, {})

    def _send(self, status: int, body: dict, headers: dict[str, str]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(payload))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator:
    servers: list[Script] = []

    def start(*answers: tuple[int, str | None, dict[str, str]]) -> Script:
        server = Script(list(answers))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def creates(server: Script) -> list[dict[str, str]]:
    return [headers for path, headers in server.seen if path.endswith("Tasks")]


def test_5xx_and_throttling_are_retried_with_one_idempotency_key(serve) -> None:
    server = serve(
        (503, None, {}),
        (403, "1010009", {"Retry-After": "7"}),
        (401, "1010005", {}),
        (500, "100001", {}),
    )
    waits: list[float] = []
    with Client(server.url, "a", "s", retries=3, sleep=waits.append) as api:
        task = api.create_revocation_task("d")

    assert task.task_id == "k"
    attempts = creates(server)
    assert len(attempts) == 5
    assert len({h["idempotency-key"] for h in attempts}) == 1
    assert [p.rsplit("/", 1)[-1] for p, _ in server.seen].count("refreshToken") == 1
    assert waits[1] == 7  # Retry-After, as said
    assert 0 <= waits[0] <= 0.2 and 0 <= waits[2] <= 0.4  # noqa: PT018 (backoff with jitter)


def test_retries_run_out_into_the_services_error(serve) -> None:
    server = serve((502, None, {}), (502, None, {}), (502, None, {}))
    with Client(server.url, "a", "s", retries=1, sleep=lambda s: None) as api:
        with pytest.raises(ApiError) as failed:
            api.create_revocation_task("d")
        api.create_revocation_task("d")  # a second logical call: a key of its own

    assert failed.value.http_status == 502
    keys = [h["idempotency-key"] for h in creates(server)]
    assert len(keys) == 4  # 502, 502 (out of retries); 502, then 201
    assert keys[0] == keys[1] != keys[2] == keys[3]


def test_no_answer_at_all_is_unreachable_after_the_retries() -> None:
    waits: list[float] = []
    api = Client(f"http://127.0.0.1:{free_port()}", "a", "s", retries=2, sleep=waits.append)
    with pytest.raises(Unreachable) as failed:
        api.login()
    assert failed.value.error_code is None
    assert len(waits) == 2
