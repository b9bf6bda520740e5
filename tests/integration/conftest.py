"""Integration fixtures: real redis-server, real Celery broker publishing into it."""

from __future__ import annotations

import threading

import pytest

from devcmd.config import Config
from devcmd.domain import auth, devices
from devcmd.receiver import Event, Respond, ThreadingServer, parse, wsgi_app
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


class Receiver(ThreadingServer):
    """A real HTTP callback receiver on 127.0.0.1 that records every POST: devcmd's receiver kit
    with signature checks left to the tests (`verifier=parse`) and no deduplication. It answers
    the `statuses` given, in turn, then 204."""

    def __init__(self, statuses: list[int] | None = None, port: int = 0) -> None:
        super().__init__(wsgi_app(self._record, verifier=parse, dedup=None), port=port)
        self.received: list[tuple[dict, dict]] = []
        self.raw: dict[str, bytes] = {}
        self.on_post = lambda body: None
        self.statuses = statuses or []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:  # type: ignore[override]  # the tests read it as an attribute
        return f"http://127.0.0.1:{self.server_address[1]}/callback"

    def next_status(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if self.statuses else 204

    def _record(self, event: Event) -> None:
        self.raw[event.webhook_id] = event.raw
        self.received.append((event.headers, event.body))
        self.on_post(event.body)
        raise Respond(self.next_status())


@pytest.fixture
def receiver():
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
