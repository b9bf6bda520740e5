"""The per-process cache of token owners (devcmd.store.auth.TokenStore) never outlives a
revocation: two app instances (two web processes) share one Redis; one caches a token by using
it, the other revokes it, and the first refuses it on its very next call."""

from __future__ import annotations

import pytest

from app import create_app
from devcmd.domain import auth
from devcmd.services import Services
from tests.unit.conftest import NullBroker, login_headers

DEVICE = "/iocm/app/dm/v1.4.0/devices/nope"


@pytest.fixture
def other(svc):
    """A second process: its own Services (its own token cache) on the same Redis."""
    return create_app(services=Services(svc.config, svc.redis, NullBroker())).test_client()


def cached(client, headers) -> None:
    """Use the token once, so this process has its owner cached."""
    assert client.get(DEVICE, headers=headers).status_code == 404  # authenticated, no device


def test_logout_elsewhere_refuses_a_cached_token_at_once(client, other, svc):
    headers = login_headers(client, svc, "app-a")
    cached(client, headers)
    token = headers["Authorization"].split()[1]
    assert other.post("/iocm/app/sec/v1.1.0/logout", json={"accessToken": token}).status_code == 204
    refused = client.get(DEVICE, headers=headers)
    assert refused.status_code == 401
    assert refused.json["error_code"] == "1010005"


def test_deleting_the_application_refuses_its_cached_tokens(client, svc):
    headers = login_headers(client, svc, "app-a")
    cached(client, headers)
    auth.delete_application(svc, "app-a")
    assert client.get(DEVICE, headers=headers).status_code == 401


def test_freezing_refuses_a_cached_token(client, svc):
    headers = login_headers(client, svc, "app-a")
    cached(client, headers)
    svc.apps.update("app-a", {"frozen": "1"})
    assert client.get(DEVICE, headers=headers).json["error_code"] == "100247"


def test_another_tokens_logout_leaves_a_cached_token_working(client, other, svc):
    headers = login_headers(client, svc, "app-a")
    second = auth.login(svc, "app-a", "app-a-secret")["accessToken"]
    cached(client, headers)
    auth.logout(svc, second)
    cached(client, headers)  # looked up again after the version changed, still live


def test_a_cached_token_is_still_checked_against_app_key(client, svc):
    headers = login_headers(client, svc, "app-a")
    login_headers(client, svc, "app-b")
    cached(client, headers)
    assert client.get(DEVICE, headers={**headers, "app_key": "app-b"}).status_code == 401
