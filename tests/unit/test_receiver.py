"""devcmd.receiver without processes: deliveries signed with the standardwebhooks package
itself, as devcmd's workers sign them, run through the kit's WSGI app (werkzeug's test client)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook
from werkzeug.test import Client as WsgiClient

from devcmd.receiver import Event, MemoryDedup, Respond, Verifier, wsgi_app

OLD = "whsec_" + "b2xkLXNlY3JldC1vbGQtc2VjcmV0LTEyMzQ="
NEW = "whsec_" + "bmV3LXNlY3JldC1uZXctc2VjcmV0LTU2Nzg="
BODY = {
    "deviceId": "d1",
    "commandId": "c1",
    "result": {"resultCode": "DELIVERED", "resultDetail": None},
}


def signed(*secrets: str, age: float = 0, webhook_id: str = "msg_c1_DELIVERED") -> tuple:
    """(body, headers) of a delivery signed by every secret, `age` seconds ago."""
    at = datetime.now(UTC) - timedelta(seconds=age)
    body = json.dumps(BODY)
    signatures = " ".join(Webhook(s).sign(webhook_id, at, body) for s in secrets)
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }
    return body.encode(), headers


def post(app, body: bytes, headers: dict[str, str]) -> int:
    return WsgiClient(app).post("/hook", data=body, headers=headers).status_code


def test_an_event_carries_the_callback_and_its_webhook_headers() -> None:
    body, headers = signed(NEW)
    event = Verifier([NEW])(body, headers)
    assert (event.device_id, event.command_id, event.status) == ("d1", "c1", "DELIVERED")
    assert event.webhook_id == "msg_c1_DELIVERED"
    assert event.result_detail is None
    assert event.timestamp == datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)


@pytest.mark.parametrize(
    ("signers", "accepting", "status"),
    [
        ((NEW, OLD), [NEW], 200),  # during a rotation devcmd signs with both
        ((NEW, OLD), [OLD], 200),
        ((NEW,), [NEW, OLD], 200),  # a receiver ready for the rotation
        ((NEW,), [OLD], 400),  # after the grace: the old secret alone no longer verifies
    ],
)
def test_rotation_any_shared_secret_verifies(signers, accepting, status) -> None:
    app = wsgi_app(lambda event: None, secrets=accepting)
    assert post(app, *signed(*signers)) == status


@pytest.mark.parametrize(
    "spoil",
    [
        lambda b, h: (b.replace(b"DELIVERED", b"SUCCESSFUL"), h),  # body altered
        lambda b, h: (b, {**h, "webhook-id": "msg_other"}),  # id altered
        lambda b, h: (b, {**h, "webhook-signature": "v1"}),  # malformed signature
        lambda b, h: (b, {**h, "webhook-signature": "v1,!!!"}),  # not base64
        lambda b, h: (b, {k: v for k, v in h.items() if k != "webhook-timestamp"}),
        lambda b, h: (b"not json", h),
    ],
)
def test_bad_deliveries_answer_400_and_never_reach_the_handler(spoil) -> None:
    handled: list[Event] = []
    app = wsgi_app(handled.append, secrets=NEW)
    assert post(app, *spoil(*signed(NEW))) == 400
    assert handled == []


def test_a_delivery_older_than_the_tolerance_is_a_replay() -> None:
    app = wsgi_app(lambda event: None, secrets=NEW, tolerance=30)
    assert post(app, *signed(NEW, age=20)) == 200
    assert post(app, *signed(NEW, age=40, webhook_id="msg_2")) == 400
    with pytest.raises(ValueError, match="tolerance"):
        Verifier(NEW, tolerance=301)  # the standardwebhooks package refuses older ones anyway


def test_duplicates_are_acknowledged_once_handled_and_a_failure_is_handled_again() -> None:
    calls: list[str] = []

    def handler(event: Event) -> None:
        calls.append(event.webhook_id)
        if len(calls) == 1:
            raise RuntimeError("database down")

    app = wsgi_app(handler, secrets=NEW)
    delivery = signed(NEW)
    answers = [post(app, *delivery) for _ in range(3)]
    assert answers == [500, 200, 200]  # failed, retried and handled, then a duplicate
    assert calls == ["msg_c1_DELIVERED"] * 2


def test_a_handler_chooses_its_answer_with_respond() -> None:
    def gone(event: Event) -> None:
        raise Respond(410, "stop sending")

    assert post(wsgi_app(gone, secrets=NEW), *signed(NEW)) == 410
    assert WsgiClient(wsgi_app(gone, secrets=NEW)).get("/hook").status_code == 405


def test_the_memory_dedup_forgets_the_least_recently_seen_beyond_its_size() -> None:
    dedup = MemoryDedup(size=2)
    assert [dedup.claim(i) for i in ("a", "b", "a", "c")] == [True, True, False, True]
    assert dedup.claim("a") is False  # seen again after "b": "c" evicted "b" instead
    assert dedup.claim("b") is True
