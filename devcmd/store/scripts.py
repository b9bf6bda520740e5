"""Loads the Lua scripts beside this module once per Redis client."""

from __future__ import annotations

from functools import cache
from importlib import resources

from redis import Redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import NoScriptError, RedisError

NAMES = (
    "create_command",
    "cancel_command",
    "open_task",
    "sweep_batch",
    "settle_statuses",
    "fetch_commands",
    "ack_command",
    "finish_command",
    "tick_device",
    "register_device",
    "claim_due",
    "take_token",
    "claim_idempotency",
    "settle_idempotency",
    "admit_call",
    "drop_outbox",
    "release_lock",
    "forget_commands",
    "forget_tasks",
    "forget_device",
    "forget_notified",
    "device_ordinal",
    "command_device",
    "read_commands",
)


# Lua functions shared by several scripts, prepended to those that call them.
PRELUDES = {
    "move_status(": "status_index",
    "record_finished(": "finished_index",
    "status_of(": "status_of",
}


@cache
def _source(name: str) -> str:
    text = resources.files(__package__).joinpath("lua", f"{name}.lua").read_text()
    for call, prelude in PRELUDES.items():
        if call in text and name != prelude:
            text = _source(prelude) + text
    return text


def slot_client(redis: Redis | RedisCluster, key: str) -> Redis:
    """The client of the one server that holds `key`: `redis` itself, or on a cluster the
    connection of the master that owns the key's slot. A script inside a pipeline (with a
    MULTI or a WAIT after it) must go there: a cluster pipeline refuses EVALSHA."""
    if not isinstance(redis, RedisCluster):
        return redis
    return redis.get_redis_connection(redis.get_node_from_key(key))


def pipelined(redis: Redis | RedisCluster) -> bool:
    """Whether a script can share a pipeline with writes to other slots, run in order: on one
    server it can; a cluster pipeline refuses EVALSHA and splits its commands by node."""
    return not isinstance(redis, RedisCluster)


def queue(pipe, script: Script, keys: list[str], args: list) -> None:
    """Queue `script` on a pipeline (by its sha; see `reply`)."""
    pipe.evalsha(script.sha, len(keys), *keys, *args)


def reply(answer, script: Script, keys: list[str], args: list):
    """The answer of a script queued with `queue`. After NOSCRIPT (the server lost its scripts:
    a restart, SCRIPT FLUSH) the script runs again alone, loaded by redis-py; other errors
    raise."""
    if isinstance(answer, NoScriptError):
        return script(keys=keys, args=args)
    if isinstance(answer, Exception):
        raise answer
    return answer


def read_each(redis: Redis | RedisCluster, script: Script, calls: list[tuple[list, list]]) -> list:
    """The answers of a read-only `script` run once per (keys, args) of `calls`, in order, in
    one round trip per server (on a cluster, one pipeline to each master holding some keys)."""
    if len(calls) == 1:
        return [script(*calls[0])]
    if pipelined(redis):
        replies = _pipelined(redis, script, calls)
        return [reply(answer, script, *call) for answer, call in zip(replies, calls, strict=True)]
    by_node: dict[Redis, list[int]] = {}
    for number, (keys, _) in enumerate(calls):
        by_node.setdefault(slot_client(redis, keys[0]), []).append(number)
    answers: list = [None] * len(calls)
    for node, numbers in by_node.items():
        try:
            replies = _pipelined(node, script, [calls[n] for n in numbers])
        except RedisError:
            replies = [RedisError()] * len(numbers)
        for number, answer in zip(numbers, replies, strict=True):
            # What the node could not answer (the slot moved, it failed over, it lost its
            # scripts) runs again alone through the cluster client, which follows redirections:
            # safe, as the script only reads.
            failed = isinstance(answer, Exception)
            answers[number] = script(*calls[number]) if failed else answer
    return answers


def _pipelined(client: Redis, script: Script, calls: list[tuple[list, list]]) -> list:
    """`script` once per call in one pipeline of `client`; errors are returned, not raised."""
    pipe = client.pipeline(transaction=False)
    for keys, args in calls:
        queue(pipe, script, keys, args)
    return pipe.execute(raise_on_error=False)


class Scripts:
    """The registered scripts of one client; redis-py reloads them after NOSCRIPT."""

    def __init__(self, redis: Redis) -> None:
        for name in NAMES:
            setattr(self, name, redis.register_script(_source(name)))

    create_command: Script
    cancel_command: Script
    open_task: Script
    sweep_batch: Script
    settle_statuses: Script
    fetch_commands: Script
    ack_command: Script
    finish_command: Script
    tick_device: Script
    register_device: Script
    claim_due: Script
    take_token: Script
    claim_idempotency: Script
    settle_idempotency: Script
    admit_call: Script
    drop_outbox: Script
    release_lock: Script
    forget_commands: Script
    forget_tasks: Script
    forget_device: Script
    forget_notified: Script
    device_ordinal: Script
    command_device: Script
    read_commands: Script
