"""Unit fixtures: fakeredis (with Lua) behind the real stores and the real Flask app."""

from __future__ import annotations

import fakeredis
import pytest

from app import create_app
from devcmd.config import Config
from devcmd.domain import auth
from devcmd.services import Services


class NullBroker:
    """Unit tests run no Celery: enqueued work is dropped (integration tests use the real one)."""

    def sweep(self, *args, **kwargs) -> None: ...

    def flush(self, *args, **kwargs) -> None: ...

    def deliver(self, *args, **kwargs) -> None: ...

    def close(self) -> None: ...


@pytest.fixture
def svc() -> Services:
    # Tests point callbacks at 127.0.0.1; flow control keeps its default (test_flow_control.py
    # sets the small limits it tests).
    config = Config().with_(callback_allow_private=True)
    return Services(config, fakeredis.FakeRedis(decode_responses=True), NullBroker())


@pytest.fixture
def client(svc):
    return create_app(services=svc).test_client()


def login_headers(client, svc, app_id: str) -> dict[str, str]:
    """Create an application, log in over HTTP and return the two auth headers."""
    auth.create_application(svc, app_id=app_id, secret=f"{app_id}-secret")
    reply = client.post(
        "/iocm/app/sec/v1.1.0/login", data={"appId": app_id, "secret": f"{app_id}-secret"}
    )
    return {"app_key": app_id, "Authorization": f"Bearer {reply.json['accessToken']}"}


@pytest.fixture
def headers(client, svc) -> dict[str, str]:
    return login_headers(client, svc, "app-a")


@pytest.fixture
def device_id(client, headers) -> str:
    reply = client.post(
        "/iocm/app/reg/v1.1.0/deviceCredentials", json={"nodeId": "n1"}, headers=headers
    )
    return reply.json["deviceId"]
