"""SPEC guarantee 6 on a real Redis: application B, holding a valid token (and a device of its
own), tries every route of the API on application A's devices, commands and tasks.

Without a grant every attempt is refused with its documented code or sees nothing, and A's data
in Redis is byte-for-byte unchanged. With a grant from A the same calls succeed (and the
credential-bound routes succeed with A's own credentials), which proves the matrix can fail.
Routes are read from `app.url_map`: a new route fails `test_the_matrix_covers_every_route`
until it is added here.
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass, field

import pytest

from app import create_app
from app.enos import ACTIONS
from devcmd.domain import auth, commands, devices, notifications, revocations
from tests import backends

pytestmark = [pytest.mark.integration, pytest.mark.backends(*backends.CLUSTERED)]

A, B = "app-a", "app-b"
SEC = "/iocm/app/sec/v1.1.0"
REG = "/iocm/app/reg/v1.1.0/deviceCredentials"
DEV = "/iocm/app/dm/v1.4.0/devices/<device_id>"
CMDS = "/iocm/app/cmd/v1.4.0/deviceCommands"
TASKS = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"
ENOS = "/connect-service/v2.1/commands"
SOUTH = "/southbound/v1/devices/<device_id>/commands"
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {}}
# Routes that hold no tenant data, answered to anyone.
# Routes that hold no application's data: health, metrics and the API document.
PUBLIC = {
    ("/static/<path:filename>", "GET"),
    ("/healthz", "GET"),
    ("/readyz", "GET"),
    ("/metrics", "GET"),
    ("/openapi.json", "GET"),
    ("/docs", "GET"),
    ("/docs/assets/<path:filename>", "GET"),
}
NOTHING = (200, None)  # answered, but without any of A's ids (checked for every call)
CROSS = (403, "100217")
ENOS_CROSS = (200, "99403")


@dataclass
class World:
    """A's data (two devices, commands in every situation, a task) and B's own device."""

    a_tokens: dict
    a_tokens2: dict
    b_tokens: dict
    device: str
    device2: str
    psk2: str
    pending: list[str]
    cancelled: str
    task: str
    b_device: str
    b_psk: str
    a_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Call:
    """One request on A's data. `refused` is what B gets acting for A without a grant (or, for
    credential-bound routes, with its own credentials); `own` what B gets naming A's ids as
    itself (None: the call names no id of A)."""

    rule: str
    method: str
    path: str
    refused: tuple[int, str | None]
    own: tuple[int, str | None] | None = None
    query: dict = field(default_factory=dict)
    json: dict | None = None
    form: dict | None = None
    headers: dict | None = None  # credential-bound routes carry their own
    label: str = ""


@pytest.fixture
def client(svc):
    return create_app(services=svc).test_client()


def login(client, app_id: str) -> dict:
    reply = client.post(f"{SEC}/login", data={"appId": app_id, "secret": f"secret-{app_id}"})
    return reply.json


def bearer(app_id: str, tokens: dict) -> dict[str, str]:
    return {"app_key": app_id, "Authorization": f"Bearer {tokens['accessToken']}"}


def basic(device_id: str, psk: str) -> dict[str, str]:
    raw = base64.b64encode(f"{device_id}:{psk}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.fixture
def world(svc, client) -> World:
    for app_id in (A, B):
        auth.create_application(svc, app_id=app_id, secret=f"secret-{app_id}")
    names = {"assetId": "asset-a", "productKey": "pk", "deviceKey": "dk-a"}
    device = devices.register(svc, A, "node-a", None, None, **names)["deviceId"]
    second = devices.register(svc, A, "node-a2", None, None)
    url = {"callbackUrl": "http://127.0.0.1:9/cb"}
    scoped = commands.create(svc, A, device, COMMAND, url)["commandId"]
    task = revocations.open_task(svc, A, device)["taskId"]
    pending = [commands.create(svc, A, device, COMMAND, url)["commandId"] for _ in range(4)]
    cancelled = commands.create(svc, A, device, COMMAND, url)["commandId"]
    commands.cancel(svc, A, cancelled)
    notifications.flush(svc, A, device)
    in_queue = commands.create(svc, A, second["deviceId"], COMMAND, {})["commandId"]
    mine = devices.register(svc, B, "node-a", None, None, assetId="asset-b")
    commands.create(svc, B, mine["deviceId"], COMMAND, {})
    w = World(
        login(client, A),
        login(client, A),
        login(client, B),
        device,
        second["deviceId"],
        second["psk"],
        pending,
        cancelled,
        task,
        mine["deviceId"],
        mine["psk"],
    )
    w.a_ids = [device, second["deviceId"], scoped, task, *pending, cancelled, in_queue]
    return w


def oceanconnect_calls(w: World) -> list[Call]:
    """Every tenant-scoped OceanConnect call, naming A's ids."""
    dev = DEV.replace("<device_id>", w.device)
    new_command = {"deviceId": w.device, "command": COMMAND}
    return [
        Call(REG, "POST", REG, CROSS, json={"nodeId": "intruder"}),
        Call(DEV, "GET", dev, CROSS, (404, "100418")),
        Call(CMDS, "POST", CMDS, CROSS, (404, "100418"), json=new_command),
        Call(CMDS, "GET", CMDS, CROSS, NOTHING, query={"deviceId": w.device}),
        Call(CMDS, "GET", CMDS, CROSS, NOTHING, label="all"),
        Call(
            f"{CMDS}/<command_id>/notifications",
            "GET",
            f"{CMDS}/{w.cancelled}/notifications",
            CROSS,
            (404, "100434"),
        ),
        Call(
            f"{CMDS}/<command_id>",
            "PUT",
            f"{CMDS}/{w.pending[0]}",
            CROSS,
            (404, "100434"),
            json={"status": "CANCELED"},
        ),
        Call(TASKS, "GET", TASKS, CROSS, NOTHING, query={"taskId": w.task}),
        Call(TASKS, "GET", TASKS, CROSS, NOTHING, query={"deviceId": w.device}),
        Call(TASKS, "GET", TASKS, CROSS, NOTHING, label="all"),
        Call(TASKS, "POST", TASKS, CROSS, (404, "100418"), json={"deviceId": w.device}),
        Call(DEV, "DELETE", dev, CROSS, (404, "100418")),  # last: it ends A's device
    ]


def enos_calls(w: World) -> list[Call]:
    """Every EnOS action, naming A's device by assetId, by productKey + deviceKey and by id."""
    names = [{"assetId": "asset-a"}, {"productKey": "pk", "deviceKey": "dk-a"}]
    actions = [
        ("get", "GET", lambda i: {"commandId": w.pending[1]}, None),
        ("search", "POST", lambda i: {}, {"expression": "state = 1"}),
        ("invokeService", "POST", lambda i: {"serviceId": "Reboot", "pendingTtl": 60}, {}),
        ("cancel", "POST", lambda i: {"commandId": w.pending[2 + i]}, None),
    ]
    calls = [
        Call(
            ENOS,
            method,
            ENOS,
            ENOS_CROSS,
            (200, "99404"),
            query={"action": action, **name, **extra(i)},
            json=body,
            label=action,
        )
        for action, method, extra, body in actions
        for i, name in enumerate(names)
    ]
    # A's command ids through B's own device: the command is not found for it.
    own_device = {"assetId": "asset-b"}
    calls += [
        Call(ENOS, "GET", ENOS, ENOS_CROSS, (200, "11404"), label="get",
             query={"action": "get", "commandId": w.pending[1], **own_device}),
        Call(ENOS, "POST", ENOS, ENOS_CROSS, (200, "99404"), label="cancel",
             query={"action": "cancel", "commandId": w.pending[2], **own_device}),
    ]  # fmt: skip
    return calls


def credential_calls(w: World, control: bool = False) -> list[Call]:
    """Routes bound to credentials rather than to an `appId`: B presents its own (or A's
    tokens under its own app_key; its device's psk for A's device). With `control`, A presents
    its own, and the same calls succeed."""
    me, tokens = (A, w.a_tokens) if control else (B, w.b_tokens)
    psk, username = (w.psk2, w.device2) if control else (w.b_psk, w.b_device)
    first_refresh = w.a_tokens["refreshToken"]
    second_refresh = (w.a_tokens2 if control else w.a_tokens)["refreshToken"]
    south = SOUTH.replace("<device_id>", w.device2)
    fetched = w.a_ids[-1]
    device_401 = (401, "200401")
    return [
        Call(f"{SEC}/login", "POST", f"{SEC}/login", (401, "100208"),
             form={"appId": A, "secret": f"secret-{me}"}),
        Call(f"{SEC}/refreshToken", "POST", f"{SEC}/refreshToken", (401, "1010005"),
             json={"appId": me, "secret": f"secret-{me}", "refreshToken": first_refresh}),
        Call(f"{SEC}/refreshToken", "POST", f"{SEC}/refreshToken", (401, "100208"), label="as A",
             json={"appId": A, "secret": f"secret-{me}", "refreshToken": second_refresh}),
        Call(SOUTH, "GET", south, device_401, headers=basic(w.device2, psk)),
        Call(SOUTH, "GET", south, device_401, headers=basic(username, psk), label="own id"),
        Call(f"{SOUTH}/<command_id>/ack", "POST", f"{south}/{fetched}/ack", device_401,
             headers=basic(w.device2, psk)),
        Call(f"{SOUTH}/<command_id>/result", "POST", f"{south}/{fetched}/result", device_401,
             headers=basic(w.device2, psk), json={"resultCode": "SUCCESSFUL"}),
        Call(SEC + "/logout", "POST", f"{SEC}/logout", (401, "1010005"),
             headers=bearer(me, tokens), json={"accessToken": w.a_tokens["accessToken"]}),
    ]  # fmt: skip


def own_device_calls(w: World) -> list[Call]:
    """B's device, on its own path, naming A's command: not its command."""
    south = SOUTH.replace("<device_id>", w.b_device)
    command = w.a_ids[-1]
    headers = basic(w.b_device, w.b_psk)
    return [
        Call(f"{SOUTH}/<command_id>/ack", "POST", f"{south}/{command}/ack", (404, "100434"),
             headers=headers),
        Call(f"{SOUTH}/<command_id>/result", "POST", f"{south}/{command}/result",
             (404, "100434"), headers=headers, json={"resultCode": "FAILED"}),
    ]  # fmt: skip


def send(client, w: World, call: Call, acting_for: str | None, caller: str = B):
    """Make the call; tenant-scoped ones as `caller`, acting for `acting_for` if given."""
    query = dict(call.query)
    headers = call.headers
    if headers is None and call.rule not in {f"{SEC}/login", f"{SEC}/refreshToken"}:
        headers = bearer(caller, w.b_tokens if caller == B else w.a_tokens)
        if acting_for:
            query["orgId" if call.rule == ENOS else "appId"] = acting_for
        elif call.rule == ENOS:
            query["orgId"] = caller
    return client.open(
        call.path,
        method=call.method,
        query_string=query,
        json=call.json,
        data=call.form,
        headers=headers or {},
    )


def outcome(reply) -> tuple[int, str | None]:
    body = reply.get_json(silent=True) or {}
    code = body.get("error_code") if "error_code" in body else body.get("code")
    return reply.status_code, None if code in (None, 0) else str(code)


def snapshot(redis, a_ids: list[str]) -> dict:
    """Everything in Redis that belongs to or mentions A: a DUMP of every key of A's hash
    tags, and, in shared keys, every entry naming A or one of its ids."""
    marks = (A, *a_ids)
    taken = {}
    for key in sorted(redis.scan_iter(count=1000)):
        if "{" + A in key:
            taken[key] = redis.dump(key)
            continue
        kind = redis.type(key)
        if kind == "string":
            entries = [redis.get(key)]
        elif kind == "hash":
            entries = [f"{k}={v}" for k, v in sorted(redis.hgetall(key).items())]
        elif kind == "zset":
            entries = [f"{m}={s}" for m, s in redis.zrange(key, 0, -1, withscores=True)]
        elif kind == "set":
            entries = sorted(redis.smembers(key))
        else:
            entries = redis.lrange(key, 0, -1)
        mentions = [e for e in entries if any(mark in str(e) for mark in marks)]
        if mentions:
            taken[key] = mentions
    return taken


def all_calls(w: World) -> list[Call]:
    return oceanconnect_calls(w) + enos_calls(w) + credential_calls(w) + own_device_calls(w)


def test_the_matrix_covers_every_route(client, world):
    routes = {
        (rule.rule, method)
        for rule in client.application.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    covered = {(c.rule, c.method) for c in all_calls(world)}
    assert routes - PUBLIC - covered == set(), "add these routes to the isolation matrix"
    assert {c.label for c in enos_calls(world)} == set(ACTIONS)


def test_without_a_grant_every_call_is_refused_and_a_is_untouched(svc, client, world):
    before = snapshot(svc.redis, world.a_ids)
    seen = []
    for call in oceanconnect_calls(world) + enos_calls(world):
        reply = send(client, world, call, acting_for=A)
        seen.append((call.method, call.path, call.label, "appId=A", outcome(reply), call.refused))
        if call.own is not None:
            reply_own = send(client, world, call, acting_for=None)
            seen.append((call.method, call.path, call.label, "own", outcome(reply_own), call.own))
            assert not any(i in reply_own.get_data(as_text=True) for i in world.a_ids)
    for call in credential_calls(world) + own_device_calls(world):
        reply = send(client, world, call, acting_for=None)
        seen.append((call.method, call.path, call.label, "creds", outcome(reply), call.refused))
        assert not any(i in reply.get_data(as_text=True) for i in world.a_ids)
    query = {"action": "get", "assetId": "asset-a", "commandId": world.pending[1]}
    no_org = client.get(ENOS, query_string=query, headers=bearer(B, world.b_tokens))
    seen.append(("GET", ENOS, "get", "no orgId", outcome(no_org), (200, "99400")))
    wrong = [s for s in seen if s[4] != s[5]]
    assert wrong == [], "calls answered otherwise than expected (got, expected last)"
    assert snapshot(svc.redis, world.a_ids) == before


def succeeded(reply) -> bool:
    status, code = outcome(reply)
    return 200 <= status < 300 and code is None


def test_with_a_grant_the_same_calls_succeed_on_a(svc, client, world):
    auth.authorize(svc, owner=A, grantee=B)
    before = snapshot(svc.redis, world.a_ids)
    failed = []
    # EnOS first: the OceanConnect calls end with deleting A's device.
    for call in enos_calls(world)[:8] + oceanconnect_calls(world):
        reply = send(client, world, call, acting_for=A)
        if not succeeded(reply):
            failed.append((call.method, call.path, call.label, outcome(reply)))
        elif call.own == NOTHING:  # a list that must now show A's data
            assert any(i in reply.get_data(as_text=True) for i in world.a_ids), call
    for call in credential_calls(world, control=True):
        reply = send(client, world, call, acting_for=None, caller=A)
        if not succeeded(reply):
            failed.append((call.method, call.path, call.label, outcome(reply)))
    assert failed == []
    assert snapshot(svc.redis, world.a_ids) != before


def test_acting_for_a_reads_and_writes_a_only(svc, client, world):
    auth.authorize(svc, owner=A, grantee=B)
    as_b_for_a = {"query_string": {"appId": A}, "headers": bearer(B, world.b_tokens)}
    made = client.post(REG, json={"nodeId": "via-b"}, **as_b_for_a).json["deviceId"]
    body = {"deviceId": made, "command": COMMAND}
    command = client.post(CMDS, json=body, **as_b_for_a).json
    assert command["appId"] == A
    assert svc.devices.owner(made) == A
    assert svc.devices.get(B, made) is None
    mine = client.get(CMDS, query_string={"deviceId": made}, headers=bearer(A, world.a_tokens))
    assert [c["commandId"] for c in mine.json["data"]] == [command["commandId"]]
    own = client.get(CMDS, headers=bearer(B, world.b_tokens)).json["data"]
    assert command["commandId"] not in {c["commandId"] for c in own}
    assert {c["appId"] for c in own} == {B}


def random_bits(values: list[str]) -> int:
    """How many bit positions of these hex ids look random: set in 25-75% of them. A counter
    or a clock fixes its high bits; uuid4 leaves 122 of 128 random, secrets.token_hex all."""
    width = max(len(v) for v in values) * 4
    numbers = [int(v, 16) for v in values]
    balanced = 0
    for bit in range(width):
        ones = sum(n >> bit & 1 for n in numbers)
        balanced += len(numbers) // 4 <= ones <= 3 * len(numbers) // 4
    return balanced


def test_ids_are_unguessable(svc):
    auth.create_application(svc, app_id=A, secret="s")
    count = 256
    device_ids = [devices.register(svc, A, f"n{i}", None, None)["deviceId"] for i in range(count)]
    command_ids = [
        commands.create(svc, A, device_ids[0], COMMAND, {})["commandId"] for _ in range(count)
    ]
    task_ids = [revocations.open_task(svc, A, device_ids[1])["taskId"] for _ in range(count)]
    for ids in (device_ids, command_ids, task_ids):
        assert len(set(ids)) == count
        assert random_bits(ids) >= 122
        assert len({int(b, 16) - int(a, 16) for a, b in itertools.pairwise(ids)}) > 1
