"""devcmd.receiver's RedisDedup on a real Redis: two receiver processes' worth of WSGI apps
sharing one Redis hand each webhook-id to exactly one handler, and a failed one to the next."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import redis
from standardwebhooks.webhooks import Webhook
from werkzeug.test import Client as WsgiClient

from devcmd.receiver import Event, RedisDedup, wsgi_app

SECRET = "whsec_" + "c2hhcmVkLXJlZGlzLWRlZHVwLXNlY3JldC0x"


def delivery(webhook_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"deviceId": "d", "commandId": "c", "result": {"resultCode": "SENT"}})
    now = datetime.now(UTC)
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(webhook_id, now, body),
    }
    return body.encode(), headers


def test_receivers_sharing_redis_handle_each_webhook_id_once(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    handled: list[tuple[str, str]] = []
    failing = {"yes": True}

    def handler(name: str):
        def handle(event: Event) -> None:
            if name == "a" and failing["yes"]:
                failing["yes"] = False
                raise RuntimeError("first attempt fails")
            handled.append((name, event.webhook_id))

        return handle

    apps = {
        name: WsgiClient(wsgi_app(handler(name), SECRET, dedup=RedisDedup(client, ttl=60)))
        for name in "ab"
    }

    def post(name: str, webhook_id: str):
        body, headers = delivery(webhook_id)
        return apps[name].post("/", data=body, headers=headers)

    answers = [
        post("a", "msg_1").status_code,  # handler fails: 500, the id is released
        post("b", "msg_1").status_code,  # devcmd's retry reaches the other process: handled
        post("a", "msg_1").status_code,  # a duplicate: acknowledged, not handled
        post("a", "msg_2").status_code,
        post("b", "msg_2").status_code,
    ]

    assert answers == [500, 200, 200, 200, 200]
    assert handled == [("b", "msg_1"), ("a", "msg_2")]
    assert 0 < client.ttl("webhook:msg_1") <= 60
    client.close()
