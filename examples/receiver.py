"""A complete callback receiver: a Flask app that verifies devcmd's signed callbacks, drops
duplicates and keeps each command's latest status. Uses `devcmd.receiver`
(`pip install 'devcmd[receiver]' flask`, and `redis` for REDIS_URL).

    DEVCMD_WEBHOOK_SECRETS=whsec_new,whsec_old PORT=8000 python examples/receiver.py
    # or in production: gunicorn -w 4 'examples.receiver:create_app()'

Callbacks go to `http://HOST:PORT/devcmd` (give that as callbackUrl); `GET /commands/<id>`
answers the latest status received for a command. Several secrets (comma-separated) keep
callbacks verifying during a rotation (`devcmd apps rotate-webhook-secret`). With REDIS_URL
set, duplicates are dropped across all the receiver's processes (Redis SET NX with a TTL);
without it, within this process only.
"""

from __future__ import annotations

import json
import logging
import os
import threading

from flask import Flask, abort

from devcmd.receiver import Event, MemoryDedup, RedisDedup, blueprint

log = logging.getLogger("devcmd-receiver")


class Statuses:
    """Stands in for your database: the latest status of each command, by status order."""

    def __init__(self) -> None:
        self.latest: dict[str, dict] = {}
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        """The handler: runs once per webhook-id; raising makes devcmd retry it later."""
        with self.lock:
            self.latest[event.command_id] = {
                "deviceId": event.device_id,
                "status": event.status,
                "resultDetail": event.result_detail,
                "at": event.timestamp.isoformat(),
            }
        print(json.dumps({"commandId": event.command_id, "status": event.status}), flush=True)


def dedup() -> MemoryDedup | RedisDedup:
    url = os.environ.get("REDIS_URL")
    if not url:
        return MemoryDedup()
    import redis  # only when asked for: the receiver kit itself needs no Redis

    return RedisDedup(redis.Redis.from_url(url), ttl=7 * 24 * 3600, prefix="devcmd-webhook:")


def create_app() -> Flask:
    secrets = [s for s in os.environ["DEVCMD_WEBHOOK_SECRETS"].split(",") if s]
    statuses = Statuses()
    app = Flask(__name__)
    app.register_blueprint(blueprint(statuses, secrets, url_prefix="/devcmd", dedup=dedup()))

    @app.get("/commands/<command_id>")
    def command(command_id: str) -> dict:
        with statuses.lock:
            found = statuses.latest.get(command_id)
        return found or abort(404)

    return app


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    port = int(os.environ.get("PORT", "8000"))
    create_app().run(os.environ.get("HOST", "127.0.0.1"), port, threaded=True)
