"""A writer and reader of command records in key layout 2 (devcmd before `devcmd migrate`
existed), kept from that version's code, to fill a store the way it did and read back what it
answered: the migration tests run it against a real Redis.

Layout 2 differs from layout 3 only in the command documents: a JSON object with every field
(ids and callbackUrl included). create_command.lua is that version's script as it was.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from redis import Redis

from devcmd.store import keys
from devcmd.store.commands import CommandStore

CREATE = (Path(__file__).parent / "create_command.lua").read_text()


def create(redis: Redis, record: dict, due_ms: int) -> None:
    """Queue `record` (as domain.commands.create builds it) the way layout 2 did."""
    app_id, device_id, command_id = record["appId"], record["deviceId"], record["commandId"]
    pipe = redis.pipeline(transaction=True)
    pipe.hset(keys.app_command_devices(app_id), command_id, device_id)
    pipe.zadd(keys.app_commands(app_id), {command_id: record["creationTime"]}, nx=True)
    pipe.sadd(keys.app_command_device_ids(app_id), device_id)
    pipe.execute()
    args = [command_id, record["creationTime"], 10_000, record["callbackUrl"] or "", due_ms]
    reply = redis.register_script(CREATE)(
        keys=CommandStore.create_keys(app_id, device_id), args=[*args, orjson.dumps(record)]
    )
    assert reply[0] == 1, reply


def read(redis: Redis, app_id: str, device_id: str, command_id: str) -> dict:
    """One command as layout 2 answered it: its document, status and lifecycle fields."""
    document = redis.hget(keys.documents(app_id, device_id), command_id)
    record = orjson.loads(document) | {
        "status": redis.hget(keys.statuses(app_id, device_id), command_id)
    }
    life = redis.hget(keys.lifecycle(app_id, device_id), command_id)
    return record | (orjson.loads(life) if life else {})
