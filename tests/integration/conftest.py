"""Integration fixtures: real redis-server, real Celery broker publishing into it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devcmd.config import Config
from devcmd.domain import auth, devices
from devcmd.services import Services
from tests import slot_guard

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _slot_guard(monkeypatch):
    """Every devcmd client of the integration suite fails a script or transaction whose keys
    span more than one cluster slot (on a single server too)."""
    slot_guard.install(monkeypatch)


@pytest.fixture
def svc(redis_url, broker_url) -> Services:
    # The receivers of these tests listen on 127.0.0.1; flow control keeps its default
    # (test_flow_control.py sets the small limit it tests).
    config = Config().with_(
        redis_url=redis_url,
        celery_broker_url=broker_url,
        sweep_batch=7,
        callback_timeout=1.0,
        callback_allow_private=True,
    )
    services = Services.from_config(config)
    yield services
    services.close()


@pytest.fixture
def app_id(svc) -> str:
    return auth.create_application(svc, app_id="app-a", secret="secret-a")["appId"]


@pytest.fixture
def headers(svc, app_id) -> dict[str, str]:
    """Northbound headers of a fresh token of `app_id`."""
    token = auth.login(svc, app_id, "secret-a")["accessToken"]
    return {"app_key": app_id, "Authorization": f"Bearer {token}"}


@pytest.fixture
def device_id(svc, app_id) -> str:
    return devices.register(svc, app_id, "node-1", None, None)["deviceId"]


class Receiver(ThreadingHTTPServer):
    """A real HTTP callback receiver on 127.0.0.1 that records every POST."""

    request_queue_size = 128  # the default backlog of 5 drops bursts of concurrent connects

    def __init__(self, statuses: list[int] | None = None, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.received: list[tuple[dict, dict]] = []
        self.raw: dict[str, bytes] = {}
        self.on_post = lambda body: None
        self.statuses = statuses or []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/callback"

    def next_status(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if self.statuses else 204


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.raw[self.headers.get("webhook-id")] = raw
        body = json.loads(raw)
        self.server.received.append((dict(self.headers), body))
        self.server.on_post(body)
        self.send_response(self.server.next_status())
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


@pytest.fixture
def receiver():
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
