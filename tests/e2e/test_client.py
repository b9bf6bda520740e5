"""devcmd.client against real processes: gunicorn (and workers where a sweep must run) on
127.0.0.1 over the session's real Redis. Token renewal, flow control, a dropped connection and
paging are observed on the wire (requests' response hooks, a TCP proxy), never mocked."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from devcmd.client import ApiError, Client, DeviceClient, RevocationTask, Throttled
from devcmd.embedded import free_port
from tests.e2e.conftest import Stack
from tests.e2e.processes import PROCESSES, REPO, Process, child_env, start_web, wait_ready

pytestmark = pytest.mark.e2e

DEVCMD = Path(sys.executable).parent / "devcmd"
TOKEN_TTL = 2  # seconds


def client(stack_url: str, application: dict[str, str], **options: object) -> Client:
    return Client(stack_url, application["appId"], application["secret"], **options)


def wire_log(api: Client) -> list[requests.Response]:
    """Every answer the client's session receives, in order (a requests response hook)."""
    seen: list[requests.Response] = []
    api.session.hooks["response"].append(lambda response, *args, **kwargs: seen.append(response))
    return seen


def test_every_call_returns_typed_objects_and_iterators_page_through(
    stack: Stack, application: dict[str, str]
) -> None:
    with client(stack.base_url, application) as api:
        device = api.register_device("client-1")
        created = [
            api.create_command(device.device_id, "Light", "SET", {"level": i}) for i in range(7)
        ]
        assert api.get_device(device.device_id).pending_commands == 7
        cancelled = api.cancel_command(created[0].command_id)
        with pytest.raises(ApiError) as again:
            api.cancel_command(created[0].command_id)
        paged = list(api.iter_commands(device.device_id, page_size=3))
        task = api.create_revocation_task(device.device_id)
        seen: list[RevocationTask] = []
        done = api.wait_for_task(task.task_id, timeout=30, progress=seen.append)
        listed = list(api.iter_revocation_tasks(device_id=device.device_id, page_size=1))
        api.delete_device(device.device_id)
        with pytest.raises(ApiError) as gone:
            api.get_device(device.device_id)

    assert cancelled.status == "CANCELED"
    assert cancelled.done
    assert (again.value.error_code, again.value.http_status) == ("100435", 409)
    assert sorted(c.command_id for c in paged) == sorted(c.command_id for c in created)
    assert task.status == "WAITING"
    assert task.total_count == 6 == len(task.device_commands)
    assert (done.status, done.cancelled_count, done.total_count) == ("SUCCESS", 6, 6)
    assert seen[-1] == done
    assert all(t.total_count == 6 for t in seen)
    assert [t.task_id for t in listed] == [task.task_id]
    assert gone.value.error_code == "100418"


def test_a_device_takes_acknowledges_and_reports_through_device_client(
    stack: Stack, application: dict[str, str]
) -> None:
    with client(stack.base_url, application) as api:
        device = api.register_device("client-dev")
        command = api.create_command(device.device_id, "Light", "SET", {"level": 1})
        with DeviceClient(stack.base_url, device.device_id, device.psk) as dev:
            (taken,) = dev.fetch(5)
            dev.ack(taken.command_id)
            dev.result(taken.command_id, "SUCCESSFUL", {"lux": 300})
            with pytest.raises(ApiError) as late:
                dev.ack(taken.command_id)
        (final,) = api.iter_commands(device.device_id)

    assert (taken.command_id, taken.paras) == (command.command_id, {"level": 1})
    assert final.status == "SUCCESSFUL"
    assert final.result == {
        "resultCode": "SUCCESSFUL",
        "resultDetail": {"lux": 300},
    }
    assert late.value.http_status == 409


@pytest.fixture
def web(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> Iterator[Callable]:
    """Starts gunicorn alone (no worker: these tests need no sweep) with the given settings;
    returns its URL. Stopped after the test."""
    started: list[Process] = []
    request.node.stash[PROCESSES] = started

    def start(**settings: object) -> str:
        port = free_port()
        env = child_env(redis_url, tmp_path / "home", **settings)
        started.append(start_web(port, env, tmp_path))
        wait_ready(f"http://127.0.0.1:{port}", started, path="/healthz")
        return f"http://127.0.0.1:{port}"

    yield start
    for process in started:
        process.stop()


def test_the_token_is_renewed_before_it_expires_and_once_more_when_refused(
    web: Callable, application: dict[str, str]
) -> None:
    short_tokens = web(token_ttl=TOKEN_TTL)
    with client(short_tokens, application) as api:
        wire = wire_log(api)
        device = api.register_device("ttl-1")
        first_token = wire[-1].request.headers["Authorization"].split()[1]
        threading.Event().wait(TOKEN_TTL)  # past the renewal point (a tenth before expiry)
        api.get_device(device.device_id)
        proactive = [(r.request.path_url, r.status_code) for r in wire]
        # Revoked behind the client's back: the next call answers 1010005 and is renewed once.
        token = wire[-1].request.headers["Authorization"].split()[1]
        logout = {"accessToken": token}
        requests.post(f"{short_tokens}/iocm/app/sec/v1.1.0/logout", json=logout, timeout=5)
        assert api.get_device(device.device_id).device_id == device.device_id
        reactive = [r.status_code for r in wire[len(proactive) :]]

    assert [path.split("?")[0].rsplit("/", 1)[-1] for path, _ in proactive] == [
        "login", "deviceCredentials", "refreshToken", device.device_id
    ]  # fmt: skip
    assert all(status < 400 for _, status in proactive)
    assert token != first_token
    assert reactive[0] == 401
    assert all(s < 400 for s in reactive[1:])
    assert len(reactive) >= 3


def devcmd(redis_url: str, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = child_env(redis_url, home)
    return subprocess.run(
        [str(DEVCMD), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def test_flow_control_is_waited_out_for_as_long_as_retry_after_says(
    web: Callable, application: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    base_url = web()
    app_id = application["appId"]
    limited = devcmd(
        redis_url, tmp_path, "apps", "set-limit", "--app-id", app_id, "--per-minute", "2"
    )
    assert limited.returncode == 0, limited.stderr
    waits: list[float] = []

    def lift_the_limit(seconds: float) -> None:
        """Instead of sleeping: note the wait asked for, then lift the limit."""
        waits.append(seconds)
        done = devcmd(redis_url, tmp_path, "apps", "set-limit", "--app-id", app_id, "--default")
        assert done.returncode == 0, done.stderr

    with client(base_url, application, sleep=lift_the_limit) as api:
        wire = wire_log(api)
        device = api.register_device("flow-1")
        api.get_device(device.device_id)
        third = api.get_device(device.device_id)  # refused once, waited out, then answered
    refused = [r for r in wire if r.status_code == 403]

    assert third.device_id == device.device_id
    assert len(refused) == 1
    assert refused[0].json()["error_code"] == "1010009"
    assert waits == [float(refused[0].headers["Retry-After"])]
    assert waits[0] > 0

    devcmd(redis_url, tmp_path, "apps", "set-limit", "--app-id", app_id, "--per-minute", "1")
    with client(base_url, application, throttled_waits=0) as api:
        api.register_device("flow-2")
        with pytest.raises(Throttled) as throttled:
            api.register_device("flow-3")
    assert throttled.value.error_code == "1010009"
    assert throttled.value.retry_after > 0


class DroppingProxy:
    """A TCP proxy on 127.0.0.1 to `upstream`; after `drop_next_response()` the next bytes the
    upstream answers are not passed on: the client's connection is closed instead. Records the
    bytes of every request it forwards."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests = bytearray()
        self.dropping = threading.Event()
        self.dropped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def drop_next_response(self) -> None:
        self.dropping.set()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            threading.Thread(
                target=self._pipe, args=(downstream, upstream, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pipe, args=(upstream, downstream, False), daemon=True
            ).start()

    def _pipe(self, source: socket.socket, target: socket.socket, request: bool) -> None:
        try:
            while data := source.recv(65536):
                if request:
                    self.requests += data
                elif self.dropping.is_set():
                    self.dropping.clear()
                    self.dropped.set()
                    break
                target.sendall(data)
        except OSError:
            pass
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)  # wakes the other direction's recv too
            end.close()


@pytest.fixture
def proxy(web: Callable) -> Iterator[DroppingProxy]:
    host, port = web().removeprefix("http://").split(":")
    dropping = DroppingProxy((host, int(port)))
    yield dropping
    dropping.close()


def create_through_a_dropped_answer(proxy: DroppingProxy, application: dict[str, str]) -> tuple:
    """Create one command whose first answer is lost; (device, command, request bytes)."""
    with client(proxy.url, application) as api:
        device = api.register_device("drop-1")
        proxy.requests.clear()
        proxy.drop_next_response()
        command = api.create_command(device.device_id, "Light", "SET", {"level": 9})
        assert proxy.dropped.is_set()
        listed = list(api.iter_commands(device.device_id))
    return command, listed, bytes(proxy.requests)


def test_a_create_whose_answer_was_lost_is_resent_with_the_same_idempotency_key(
    proxy: DroppingProxy, application: dict[str, str]
) -> None:
    _, _, sent = create_through_a_dropped_answer(proxy, application)
    creates = re.findall(rb"POST /iocm/app/cmd/v1.4.0/deviceCommands HTTP", sent)
    keys = re.findall(rb"(?i)\r\nidempotency-key: *([^\r]+)", sent)
    assert len(creates) == 2
    assert len(keys) == 2
    assert len(set(keys)) == 1


def test_a_dropped_connection_retried_does_not_duplicate_the_command(
    proxy: DroppingProxy, application: dict[str, str]
) -> None:
    command, listed, _ = create_through_a_dropped_answer(proxy, application)
    assert [c.command_id for c in listed] == [command.command_id]
