"""Tokens on a real Redis (hashed, with a TTL, rotated, revoked) and deleting an application
through the real `devcmd apps delete` process."""

from __future__ import annotations

import base64
import json

import pytest
from standardwebhooks.webhooks import Webhook

from app import create_app
from devcmd.domain import auth, commands, devices, notifications, revocations
from devcmd.store import keys
from devcmd.store.auth import digest
from tests.integration.test_admin_cli import devcmd
from tests.integration.test_notifications import deliver_queued

pytestmark = pytest.mark.integration

SEC = "/iocm/app/sec/v1.1.0"
CMDS = "/iocm/app/cmd/v1.4.0/deviceCommands"
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {}}


@pytest.fixture
def client(svc):
    return create_app(services=svc).test_client()


def login(client, app_id: str, secret: str) -> dict:
    reply = client.post(f"{SEC}/login", data={"appId": app_id, "secret": secret})
    assert reply.status_code == 200, reply.json
    return reply.json


def bearer(app_id: str, tokens: dict) -> dict[str, str]:
    return {"app_key": app_id, "Authorization": f"Bearer {tokens['accessToken']}"}


def refused_code(reply) -> tuple[int, str]:
    return reply.status_code, reply.json["error_code"]


def every_string_in_redis(redis) -> str:
    """Every key name and every value, field and member in Redis, joined: what a dump leaks."""
    found = []
    for key in redis.scan_iter(count=1000):
        found.append(key)
        kind = redis.type(key)
        if kind == "string":
            found.append(redis.get(key))
        elif kind == "hash":
            found += [part for item in redis.hgetall(key).items() for part in item]
        elif kind == "set":
            found += redis.smembers(key)
        elif kind == "zset":
            found += redis.zrange(key, 0, -1)
        elif kind == "list":
            found += redis.lrange(key, 0, -1)
    return "\n".join(found)


def test_redis_holds_no_raw_token_secret_or_psk(svc, client):
    secret = auth.create_application(svc, app_id="app-a")["secret"]
    first = login(client, "app-a", secret)
    body = {"appId": "app-a", "secret": secret, "refreshToken": first["refreshToken"]}
    second = client.post(f"{SEC}/refreshToken", json=body).json
    reply = client.post(
        "/iocm/app/reg/v1.1.0/deviceCredentials",
        json={"nodeId": "n1"},
        headers=bearer("app-a", second),
    )
    psk = reply.json["psk"]
    stored = every_string_in_redis(svc.redis)
    assert digest(second["accessToken"]) in stored  # the scan does see token keys
    for raw in (secret, psk, *first.values(), *second.values()):
        if isinstance(raw, str) and len(raw) > 8:
            assert raw not in stored


def test_access_token_expires_after_expires_in(svc, client, app_id):
    tokens = login(client, app_id, "secret-a")
    assert tokens["expiresIn"] == 3600
    access_ttl = svc.redis.ttl(keys.access_token(digest(tokens["accessToken"])))
    refresh_ttl = svc.redis.ttl(keys.refresh_token(digest(tokens["refreshToken"])))
    assert 3600 - 5 <= access_ttl <= 3600
    assert svc.config.refresh_token_ttl - 5 <= refresh_ttl <= svc.config.refresh_token_ttl

    svc.config = svc.config.with_(token_ttl=120)
    short = login(client, app_id, "secret-a")
    assert short["expiresIn"] == 120
    assert 115 <= svc.redis.ttl(keys.access_token(digest(short["accessToken"]))) <= 120


def test_refresh_token_works_once_and_only_with_the_secret(svc, client, app_id):
    tokens = login(client, app_id, "secret-a")
    body = {"appId": app_id, "secret": "secret-a", "refreshToken": tokens["refreshToken"]}
    wrong = client.post(f"{SEC}/refreshToken", json=body | {"secret": "nope"})
    assert refused_code(wrong) == (401, "100208")

    rotated = client.post(f"{SEC}/refreshToken", json=body)
    assert rotated.status_code == 200
    assert rotated.json["refreshToken"] != tokens["refreshToken"]
    assert refused_code(client.post(f"{SEC}/refreshToken", json=body)) == (401, "1010005")
    again = body | {"refreshToken": rotated.json["refreshToken"]}
    assert client.post(f"{SEC}/refreshToken", json=again).status_code == 200
    assert client.get(CMDS, headers=bearer(app_id, rotated.json)).status_code == 200


def test_logout_revokes_that_token_at_once_and_only_it(svc, client, app_id):
    kept, dropped = login(client, app_id, "secret-a"), login(client, app_id, "secret-a")
    assert client.get(CMDS, headers=bearer(app_id, dropped)).status_code == 200
    out = client.post(f"{SEC}/logout", json={"accessToken": dropped["accessToken"]})
    assert out.status_code == 204
    assert refused_code(client.get(CMDS, headers=bearer(app_id, dropped))) == (401, "1010005")
    assert client.get(CMDS, headers=bearer(app_id, kept)).status_code == 200
    twice = client.post(f"{SEC}/logout", json={"accessToken": dropped["accessToken"]})
    assert refused_code(twice) == (401, "1010005")
    index = svc.redis.zrange(keys.app_tokens(app_id), 0, -1)
    assert f"access:{digest(dropped['accessToken'])}" not in index
    assert f"access:{digest(kept['accessToken'])}" in index


def queued_sweeps(svc) -> list[list[str]]:
    """The [appId, deviceId, taskId] of every sweep published to the `revocations` queue."""
    found = []
    for raw in svc.redis.lrange("revocations", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == "devcmd.revocations.sweep":
            args, _, _ = json.loads(base64.b64decode(message["body"]))
            found.append(args)
    return found


def run_queued_sweeps(svc) -> None:
    """Do what the revocation worker does with each queued sweep message."""
    for app_id, device_id, task_id in queued_sweeps(svc):
        while not revocations.sweep(svc, app_id, device_id, task_id).done:
            pass


def test_delete_refuses_while_the_application_has_devices(svc, client, app_id, redis_url):
    tokens = login(client, app_id, "secret-a")
    devices.register(svc, app_id, "n1", None, None)
    done = devcmd(redis_url, "apps", "delete", "--app-id", app_id)
    assert done.returncode == 1
    assert "1 device" in done.stderr
    assert "--force" in done.stderr
    assert "Traceback" not in done.stderr
    assert client.get(CMDS, headers=bearer(app_id, tokens)).status_code == 200


def test_delete_of_an_unknown_application_is_a_clear_error(svc, redis_url):
    done = devcmd(redis_url, "apps", "delete", "--app-id", "nobody")
    assert done.returncode == 1
    assert "does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_deleted_application_is_locked_out_at_once(svc, client, app_id, redis_url):
    other = auth.create_application(svc, app_id="app-b", secret="secret-b")["appId"]
    auth.authorize(svc, owner=app_id, grantee=other)
    auth.authorize(svc, owner=other, grantee=app_id)
    sessions = [login(client, app_id, "secret-a") for _ in range(3)]
    b_tokens = login(client, other, "secret-b")
    assert client.get(f"{CMDS}?appId={app_id}", headers=bearer(other, b_tokens)).status_code == 200

    done = devcmd(redis_url, "apps", "delete", "--app-id", app_id)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"appId": app_id, "deletedDevices": 0, "revokedTokens": 6}

    for tokens in sessions:
        assert refused_code(client.get(CMDS, headers=bearer(app_id, tokens))) == (401, "1010005")
        body = {"appId": app_id, "secret": "secret-a", "refreshToken": tokens["refreshToken"]}
        assert client.post(f"{SEC}/refreshToken", json=body).status_code == 401
        assert svc.tokens.access_app(tokens["accessToken"]) is None
    relogin = client.post(f"{SEC}/login", data={"appId": app_id, "secret": "secret-a"})
    assert refused_code(relogin) == (401, "100208")
    acting = client.get(f"{CMDS}?appId={app_id}", headers=bearer(other, b_tokens))
    assert refused_code(acting) == (403, "100203")
    assert not svc.apps.is_granted(other, app_id)
    assert not svc.redis.exists(keys.grants(app_id), keys.app_tokens(app_id))
    listed = json.loads(devcmd(redis_url, "apps", "list").stdout)
    assert [a["appId"] for a in listed] == [other]
    again = devcmd(redis_url, "apps", "create", "--app-id", app_id)
    assert again.returncode == 1  # an appId is never reused: it would inherit old records
    assert client.get(CMDS, headers=bearer(other, b_tokens)).status_code == 200


def test_force_delete_cancels_pending_commands_with_signed_callbacks(
    svc, client, app_id, device_id, redis_url, receiver
):
    webhook_secret = svc.apps.get(app_id)["webhookSecret"]
    second = devices.register(svc, app_id, "node-2", None, None)
    pending = [
        commands.create(svc, app_id, dev, COMMAND, {"callbackUrl": receiver.url})["commandId"]
        for dev in (device_id, device_id, second["deviceId"])
    ]
    done = devcmd(redis_url, "apps", "delete", "--app-id", app_id, "--force")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["deletedDevices"] == 2
    assert svc.devices.ids(app_id) == []
    assert svc.devices.owner(second["deviceId"]) is None  # its device API login is refused

    run_queued_sweeps(svc)
    assert [commands.get(svc, app_id, c)["status"] for c in pending] == ["CANCELED"] * 3
    for dev in (device_id, second["deviceId"]):
        notifications.flush(svc, app_id, dev)
    assert deliver_queued(svc)["delivered"] == 3
    assert sorted(body["commandId"] for _, body in receiver.received) == sorted(pending)
    for headers, _ in receiver.received:
        raw = receiver.raw[headers["webhook-id"]]
        Webhook(webhook_secret).verify(raw, headers)  # raises if unsigned or mis-signed


def test_another_application_can_neither_burn_a_refresh_token_nor_log_a_token_out(
    svc, client, app_id
):
    auth.create_application(svc, app_id="app-b", secret="secret-b")
    mine, theirs = login(client, app_id, "secret-a"), login(client, "app-b", "secret-b")
    stolen = {"appId": "app-b", "secret": "secret-b", "refreshToken": mine["refreshToken"]}
    assert refused_code(client.post(f"{SEC}/refreshToken", json=stolen)) == (401, "1010005")
    out = client.post(
        f"{SEC}/logout", json={"accessToken": mine["accessToken"]}, headers=bearer("app-b", theirs)
    )
    assert refused_code(out) == (401, "1010005")
    assert client.get(CMDS, headers=bearer(app_id, mine)).status_code == 200
    body = {"appId": app_id, "secret": "secret-a", "refreshToken": mine["refreshToken"]}
    assert client.post(f"{SEC}/refreshToken", json=body).status_code == 200
