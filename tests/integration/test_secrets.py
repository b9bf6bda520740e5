"""Secrets, psks and tokens are shown once, at creation, and never again: not in logs (captured
at DEBUG), not in later answers of the API or the CLI."""

from __future__ import annotations

import json
import logging

import pytest

from app import create_app
from devcmd.domain import auth
from tests.integration.test_admin_cli import devcmd

pytestmark = pytest.mark.integration

SEC = "/iocm/app/sec/v1.1.0"
SECRET_FIELDS = ("secret", "secretHash", "psk", "pskHash", "webhookSecret", "accessToken")


def test_api_never_logs_or_answers_again_a_secret_psk_or_token(svc, caplog):
    caplog.set_level(logging.DEBUG)
    client = create_app(services=svc).test_client()
    created = auth.create_application(svc, app_id="app-a")
    tokens = client.post(f"{SEC}/login", data={"appId": "app-a", "secret": created["secret"]}).json
    body = {"appId": "app-a", "secret": created["secret"], "refreshToken": tokens["refreshToken"]}
    rotated = client.post(f"{SEC}/refreshToken", json=body).json
    headers = {"app_key": "app-a", "Authorization": f"Bearer {rotated['accessToken']}"}
    device = client.post(
        "/iocm/app/reg/v1.1.0/deviceCredentials", json={"nodeId": "n1"}, headers=headers
    ).json
    assert device["psk"]
    shown_later = [
        client.get(f"/iocm/app/dm/v1.4.0/devices/{device['deviceId']}", headers=headers),
        client.post(f"{SEC}/login", data={"appId": "app-a", "secret": "wrong"}),
        client.post(f"{SEC}/refreshToken", json=body),  # used: refused
    ]
    later = "\n".join(reply.get_data(as_text=True) for reply in shown_later)
    later += json.dumps(auth.list_applications(svc))
    values = [
        created["secret"],
        created["webhookSecret"],
        device["psk"],
        *(tokens[k] for k in ("accessToken", "refreshToken")),
        *(rotated[k] for k in ("accessToken", "refreshToken")),
    ]
    logged = "\n".join(f"{r.getMessage()} {r.args} {r.exc_text}" for r in caplog.records)
    assert caplog.records  # DEBUG capture is live
    for value in values:
        assert value not in logged
        assert value not in later
    for name in SECRET_FIELDS:
        assert f'"{name}"' not in later


def test_cli_shows_the_secrets_once(redis_url):
    created = devcmd(redis_url, "apps", "create", "--app-id", "app-a")
    assert created.returncode == 0, created.stderr
    shown = json.loads(created.stdout)
    secrets = [shown["secret"], shown["webhookSecret"]]
    assert not any(s in created.stderr for s in secrets)
    devcmd(redis_url, "apps", "create", "--app-id", "app-b")
    later = [
        devcmd(redis_url, "apps", "list"),
        devcmd(redis_url, "apps", "authorize", "--app", "app-a", "--grantee", "app-b"),
        devcmd(redis_url, "apps", "create", "--app-id", "app-a"),  # taken: refused
        devcmd(redis_url, "apps", "delete", "--app-id", "app-a"),
    ]
    assert [run.returncode for run in later] == [0, 0, 1, 0]
    output = "\n".join(run.stdout + run.stderr for run in later)
    for value in secrets:
        assert value not in output
    for name in ("secret", "webhookSecret", "secretHash"):
        assert f'"{name}"' not in output
