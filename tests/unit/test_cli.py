"""`devcmd apps ...` through click's CliRunner, against the session's real Redis (REDIS_URL set)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterator

import click
import pytest
import redis
from click.testing import CliRunner, Result
from werkzeug.security import check_password_hash

from devcmd.cli import main
from devcmd.cli.notifications import parse_since
from devcmd.config import Config
from devcmd.domain import auth
from devcmd.embedded import free_port
from devcmd.services import Services
from devcmd.store import keys
from devcmd.store.auth import AppStore

# A real Redis server is needed, so these run with the integration tests.
pytestmark = pytest.mark.integration

Invoke = Callable[..., Result]


@pytest.fixture
def invoke(redis_url: str) -> Invoke:
    """Run `devcmd ARGS...` in-process with REDIS_URL pointing at the test server."""
    runner = CliRunner()

    def invoke(*args: str, url: str = redis_url) -> Result:
        return runner.invoke(main, list(args), env={"REDIS_URL": url})

    return invoke


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client to look at what the CLI stored."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def ok(result: Result) -> object:
    """The JSON a successful command printed (fails the test with its output otherwise)."""
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return json.loads(result.stdout)


def failed(result: Result) -> str:
    """The message of a command that failed cleanly: exit 1, nothing on stdout, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    return result.stderr


def everything_stored(client: redis.Redis) -> str:
    """Every key and value in the server, as one string to search."""
    parts = []
    for key in client.scan_iter():
        kind = client.type(key)
        if kind == "hash":
            value = client.hgetall(key)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "string":
            value = client.get(key)
        else:
            value = kind
        parts.append(f"{key}={value}")
    return "\n".join(parts)


def test_create_prints_exactly_the_credentials(invoke: Invoke) -> None:
    created = ok(invoke("apps", "create", "--app-id", "acme", "--name", "Acme"))
    assert set(created) == {"appId", "secret", "webhookSecret"}
    assert created["appId"] == "acme"
    assert len(created["secret"]) >= 24
    assert created["webhookSecret"].startswith("whsec_")


def test_create_generates_distinct_ids_and_secrets(invoke: Invoke) -> None:
    first = ok(invoke("apps", "create"))
    second = ok(invoke("apps", "create"))
    assert first["appId"] != second["appId"]
    assert first["secret"] != second["secret"]
    assert len(first["appId"]) == 32


def test_secret_is_stored_only_as_a_hash(invoke: Invoke, client: redis.Redis, redis_url: str):
    secret = "correct-horse-battery-staple"
    ok(invoke("apps", "create", "--app-id", "acme", "--secret", secret))
    stored = everything_stored(client)
    assert "acme" in stored
    assert secret not in stored
    assert check_password_hash(AppStore(client).get("acme")["secretHash"], secret)
    # The stored hash is what login checks: the printed secret really works.
    svc = Services.from_config(Config(redis_url=redis_url))
    try:
        assert auth.login(svc, "acme", secret)["accessToken"]
    finally:
        svc.redis.close()


def test_duplicate_app_id_fails_and_keeps_the_first(invoke: Invoke, client: redis.Redis):
    first = ok(invoke("apps", "create", "--app-id", "acme", "--secret", "first-secret"))
    message = failed(invoke("apps", "create", "--app-id", "acme", "--secret", "other-secret"))
    assert "already exists" in message
    assert first["appId"] == "acme"
    assert check_password_hash(AppStore(client).get("acme")["secretHash"], "first-secret")


def test_invalid_app_id_fails_with_the_rule(invoke: Invoke, client: redis.Redis) -> None:
    message = failed(invoke("apps", "create", "--app-id", "a:b"))
    assert "appId" in message
    assert client.keys() == [keys.layout()]  # only what any process records on start


def test_list_shows_apps_without_secrets(invoke: Invoke) -> None:
    assert ok(invoke("apps", "list")) == []
    acme = ok(invoke("apps", "create", "--app-id", "acme", "--name", "Acme Corp"))
    ok(invoke("apps", "create", "--app-id", "beta"))
    result = invoke("apps", "list")
    assert ok(result) == [
        {"appId": "acme", "name": "Acme Corp", "frozen": False},
        {"appId": "beta", "name": "beta", "frozen": False},
    ]
    assert acme["secret"] not in result.stdout
    assert "secretHash" not in result.stdout


def test_authorize_grants_one_direction(invoke: Invoke, client: redis.Redis) -> None:
    ok(invoke("apps", "create", "--app-id", "owner"))
    ok(invoke("apps", "create", "--app-id", "caller"))
    granted = ok(invoke("apps", "authorize", "--app", "owner", "--grantee", "caller"))
    assert granted == {"owner": "owner", "grantee": "caller"}
    store = AppStore(client)
    assert store.is_granted("owner", "caller")
    assert not store.is_granted("caller", "owner")


def test_authorize_unknown_app_fails(invoke: Invoke, client: redis.Redis) -> None:
    ok(invoke("apps", "create", "--app-id", "owner"))
    message = failed(invoke("apps", "authorize", "--app", "owner", "--grantee", "ghost"))
    assert "ghost" in message
    assert not AppStore(client).is_granted("owner", "ghost")


def test_unreachable_redis_fails_without_traceback(invoke: Invoke) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    message = failed(invoke("apps", "list", url=closed))
    assert "Redis" in message


@pytest.mark.parametrize(
    ("args", "summary"),
    [
        ([], "queue, deliver and revoke device commands"),
        (["run"], "Run web, the two workers and beat"),
        (["apps"], "Create, list, authorize and delete applications"),
        (["apps", "create"], "--app-id"),
        (["apps", "list"], "JSON list"),
        (["apps", "authorize"], "--grantee"),
        (["apps", "delete"], "--force"),
        (["apps", "rotate-webhook-secret"], "--grace-hours"),
        (["notifications"], "re-send callback notifications"),
        (["notifications", "retry"], "--since"),
        (["simulate"], "--fail-rate"),
    ],
)
def test_every_command_has_help(args: list[str], summary: str) -> None:
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert summary in result.stdout


NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        (None, 0),
        ("90s", NOW - datetime.timedelta(seconds=90)),
        ("30m", NOW - datetime.timedelta(minutes=30)),
        ("6h", NOW - datetime.timedelta(hours=6)),
        ("2d", NOW - datetime.timedelta(days=2)),
        ("2026-11-23T08:00:00Z", datetime.datetime(2026, 11, 23, 8, tzinfo=datetime.UTC)),
        ("2026-11-23T08:00", datetime.datetime(2026, 11, 23, 8, tzinfo=datetime.UTC)),
        ("2026-11-23T09:00+01:00", datetime.datetime(2026, 11, 23, 8, tzinfo=datetime.UTC)),
    ],
)
def test_since_takes_durations_and_iso_times(since, expected) -> None:
    want = 0 if expected == 0 else int(expected.timestamp() * 1000)
    assert parse_since(since, NOW) == want


@pytest.mark.parametrize("since", ["yesterday", "5w", "h", "-3h", "2026-13-01"])
def test_since_refuses_anything_else(since) -> None:
    with pytest.raises(click.BadParameter):
        parse_since(since, NOW)
