"""Request ids (accepted, generated, answered on every response, shared with EnOS's requestId)
and the JSON log lines of requests: context fields present, credentials absent."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest

from devcmd import logs
from devcmd.domain import auth

REG = "/iocm/app/reg/v1.1.0/deviceCredentials"
LOGIN = "/iocm/app/sec/v1.1.0/login"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("abc-123", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("tab\there", False),
        ("line\nbreak", False),
        ("café", False),
        ("", False),
        (None, False),
    ],
)
def test_a_request_id_is_kept_only_when_printable_and_short(given, kept) -> None:
    accepted = logs.accept_request_id(given)
    assert (accepted == given) is kept
    if not kept:
        assert len(accepted) == 32
        assert int(accepted, 16) >= 0


def test_every_answer_carries_the_request_id_errors_included(client, headers) -> None:
    answers = {
        "ok": client.get("/healthz", headers={"X-Request-Id": "rid-ok"}),
        "401": client.post(
            REG,
            json={"nodeId": "n"},
            headers={"app_key": "app-a", "Authorization": "Bearer bad", "X-Request-Id": "rid-401"},
        ),
        "404": client.get("/nowhere", headers={"X-Request-Id": "rid-404"}),
        "400": client.post(REG, json={"nodeId": 5}, headers={**headers, "X-Request-Id": "rid-400"}),
    }
    assert {name: a.headers["X-Request-Id"] for name, a in answers.items()} == {
        "ok": "rid-ok",
        "401": "rid-401",
        "404": "rid-404",
        "400": "rid-400",
    }
    assert [a.status_code for a in answers.values()] == [200, 401, 404, 400]


def test_an_unacceptable_request_id_is_replaced(client) -> None:
    answer = client.get("/healthz", headers={"X-Request-Id": "x" * 200})
    assert len(answer.headers["X-Request-Id"]) == 32


def test_enos_request_id_is_the_x_request_id(client, headers) -> None:
    answer = client.post(
        "/connect-service/v2.1/commands?action=get&orgId=app-a&assetId=nope&commandId=1",
        headers={**headers, "X-Request-Id": "enos-rid"},
    )
    assert answer.json["requestId"] == "enos-rid"
    assert answer.headers["X-Request-Id"] == "enos-rid"


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict]]]:
    """Reads the JSON lines written through devcmd's formatter and context filter so far."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter("json"))
    handler.addFilter(logs.ContextFilter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def test_request_lines_carry_context_and_no_credentials(client, svc, log_lines) -> None:
    app = auth.create_application(svc, app_id="app-log", secret="s3cret-app-log")
    login = client.post(LOGIN, data={"appId": "app-log", "secret": "s3cret-app-log"})
    token = login.json["accessToken"]
    headers = {"app_key": "app-log", "Authorization": f"Bearer {token}", "X-Request-Id": "r-1"}
    device = client.post(REG, json={"nodeId": "n-log"}, headers=headers).json
    wrong = {"Authorization": "Bearer wrong-token-value", "app_key": "app-log"}
    assert client.post(REG, json={"nodeId": "n"}, headers=wrong).status_code == 401

    lines = log_lines()
    registered = [line for line in lines if line.get("request_id") == "r-1"]
    assert [(r["route"], r["status"], r["app_id"]) for r in registered] == [(REG, 200, "app-log")]
    assert {"time", "level", "logger", "message", "duration_ms"} <= registered[0].keys()
    assert len({line["request_id"] for line in lines}) == len(lines) == 3
    written = json.dumps(lines)
    for credential in (
        "s3cret-app-log", token, login.json["refreshToken"], device["psk"],
        app["webhookSecret"], "wrong-token-value", "Bearer",
    ):  # fmt: skip
        assert credential not in written
