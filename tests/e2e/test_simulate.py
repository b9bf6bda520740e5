"""`devcmd simulate` end to end: the simulator as a real process driving the device API of a real
stack (gunicorn, Celery worker and beat, Redis) while commands are queued over the OceanConnect
API and a revocation task is opened on one of the simulated devices."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from devcmd.simulate import credentials_path, fails
from tests.e2e.conftest import Stack
from tests.e2e.oceanconnect import OceanConnect
from tests.e2e.processes import REPO, child_env
from tests.e2e.receiver import Receiver

pytestmark = pytest.mark.e2e

DEVCMD = Path(sys.executable).parent / "devcmd"
SEED = "e2e-simulate"
FAIL_RATE = 0.3
# Taken two at a time with --ack-delay 0.1, a backlog of 40 lasts at least 2 s: long enough
# for the test to open the task and queue more commands before the simulator can go idle.
BACKLOG = 40
AFTER_TASK = 5
SIM_TIMEOUT = 45.0
CALLBACK_TIMEOUT = 30.0
SETTLE = 1.0  # seconds to keep listening after the last expected callback, to catch duplicates
FINISHED = ("SUCCESSFUL", "FAILED")


@dataclass
class Simulator:
    """A running `devcmd simulate`, its stdout and stderr in files."""

    popen: subprocess.Popen
    stdout: Path
    stderr: Path

    def wait(self, timeout: float = SIM_TIMEOUT) -> int:
        """Wait for the exit code; kill the simulator if it takes longer than `timeout`."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(
                f"simulate still running after {timeout} s:\n{self.errors()}"
            ) from None

    def summary(self) -> dict:
        """The JSON summary: the last line of stdout."""
        return json.loads(self.stdout.read_text().splitlines()[-1])

    def errors(self) -> str:
        return self.stderr.read_text(errors="replace")[-4000:]


def start_simulator(
    stack: Stack, app: dict[str, str], home: Path, log_dir: Path, *options: str
) -> Simulator:
    """Start the `devcmd` console script's `simulate` against the stack, as `app`."""
    n = len(list(log_dir.glob("simulate-*.out")))
    stdout, stderr = log_dir / f"simulate-{n}.out", log_dir / f"simulate-{n}.err"
    args = [
        str(DEVCMD), "simulate",
        "--base-url", stack.base_url,
        "--app-id", app["appId"],
        "--secret", app["secret"],
        "--seed", SEED,
        "--fail-rate", str(FAIL_RATE),
        "--ack-delay", "0.1",
        "--poll-interval", "0.05",
        *options,
    ]  # fmt: skip
    env = child_env("redis://127.0.0.1:1/0", home)  # a plain HTTP client: no Redis needed
    with stdout.open("wb") as out, stderr.open("wb") as err:
        popen = subprocess.Popen(
            args, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
    return Simulator(popen, stdout, stderr)


def simulate(
    stack: Stack, app: dict[str, str], home: Path, log_dir: Path, *options: str
) -> Simulator:
    """Run `devcmd simulate` to its end."""
    simulator = start_simulator(stack, app, home, log_dir, *options)
    simulator.wait()
    return simulator


def saved_devices(home: Path, app_id: str) -> dict[str, str]:
    """nodeId -> deviceId, from the simulator's credentials file."""
    saved = json.loads(credentials_path(home, app_id).read_text())
    return {node_id: entry["deviceId"] for node_id, entry in saved.items()}


def create_commands(
    oc: OceanConnect, device_id: str, count: int, callback_url: str | None
) -> list[str]:
    ids = []
    for i in range(count):
        response = oc.create_command(device_id, "SET_LEVEL", {"level": i}, callback_url)
        assert response.status_code == 201, response.text
        ids.append(response.json()["commandId"])
    return ids


def commands_of(oc: OceanConnect, device_id: str) -> dict[str, dict]:
    """Every command of the device as the API answers it, by commandId."""
    response = oc.query_commands(device_id)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["pagination"]["totalSize"] == len(page["data"])
    return {c["commandId"]: c for c in page["data"]}


def wait_until_taken(oc: OceanConnect, device_id: str, timeout: float = 15.0) -> None:
    """Wait until the simulator has fetched at least one of the device's commands."""
    deadline = time.monotonic() + timeout
    while not any(c["status"] != "PENDING" for c in commands_of(oc, device_id).values()):
        assert time.monotonic() < deadline, f"no command of {device_id} taken in {timeout} s"
        time.sleep(0.02)


def wait_for_callbacks(receiver: Receiver, expected: set[tuple[str, str]]) -> dict:
    """Wait for an accepted callback per (commandId, status); returns statuses by commandId."""
    deadline = time.monotonic() + CALLBACK_TIMEOUT
    while True:
        seen = {(d.body["commandId"], d.body["result"]["resultCode"]) for d in receiver.accepted()}
        if expected <= seen or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    time.sleep(SETTLE)
    deliveries = receiver.deliveries()
    assert all(d.status == 204 for d in deliveries)
    webhook_ids = [d.headers["webhook-id"] for d in deliveries]
    assert len(webhook_ids) == len(set(webhook_ids)), "a callback was delivered twice"
    by_command: dict[str, dict[str, dict]] = defaultdict(dict)
    for delivery in deliveries:
        by_command[delivery.body["commandId"]][delivery.body["result"]["resultCode"]] = (
            delivery.body
        )
    return by_command


def final_statuses(
    oc: OceanConnect, queued: dict[str, list[str]], received: dict[str, dict]
) -> dict[str, str]:
    """Every queued command's status as the API answers it; those the simulator took carry
    the result it reported, from the device that took them."""
    statuses = {}
    for device_id, command_ids in queued.items():
        commands = commands_of(oc, device_id)
        assert sorted(commands) == sorted(command_ids)
        statuses.update({command_id: c["status"] for command_id, c in commands.items()})
        for command_id in commands.keys() & received.keys():
            entry = received[command_id]
            assert entry["deviceId"] == device_id
            assert entry["paras"] == commands[command_id]["command"]["paras"]
            assert commands[command_id]["result"] == {
                "resultCode": entry["outcome"],
                "resultDetail": {"simulated": True, "nodeId": entry["nodeId"]},
            }
    return statuses


def assert_summary(summary: dict, recorded: dict, received: dict[str, dict]) -> None:
    """The summary line is the record's, and its counts are those of the commands received."""
    assert summary == recorded["summary"]
    outcomes = [entry["outcome"] for entry in received.values()]
    assert (summary["devices"], summary["stoppedBy"], summary["seed"]) == (3, "idle", SEED)
    assert summary["fetched"] == summary["acked"] == len(received)
    assert summary["succeeded"] == outcomes.count("SUCCESSFUL")
    assert summary["failed"] == outcomes.count("FAILED")
    assert (summary["rejected"], summary["errors"]) == (0, 0)


def assert_callbacks(receiver: Receiver, received: dict[str, dict], canceled: set[str]) -> None:
    """Each command taken was called back SENT, DELIVERED and its outcome (with the device's
    resultDetail); each canceled one CANCELED; nothing else and nothing twice."""
    expected = {command_id: {"CANCELED"} for command_id in canceled}
    for command_id, entry in received.items():
        expected[command_id] = {"SENT", "DELIVERED", entry["outcome"]}
    pairs = {(command_id, s) for command_id, statuses in expected.items() for s in statuses}
    callbacks = wait_for_callbacks(receiver, pairs)
    assert {command_id: set(bodies) for command_id, bodies in callbacks.items()} == expected
    for command_id, entry in received.items():
        detail = callbacks[command_id][entry["outcome"]]["result"]["resultDetail"]
        assert detail == {"simulated": True, "nodeId": entry["nodeId"]}


def test_simulator_and_revocation_task_side_by_side(
    stack: Stack,
    application: dict[str, str],
    oceanconnect: OceanConnect,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    home, record = tmp_path / "sim-home", tmp_path / "record.json"
    registration = simulate(
        stack, application, home, tmp_path, "--devices", "3", "--commands-until-idle"
    )
    assert registration.popen.returncode == 0, registration.errors()
    devices = saved_devices(home, application["appId"])
    assert sorted(devices) == ["sim-0001", "sim-0002", "sim-0003"]
    revoked = devices["sim-0001"]
    assert oceanconnect.login().status_code == 200
    url = receiver.url("/sim")
    before = {d: create_commands(oceanconnect, d, BACKLOG, url) for d in devices.values()}

    simulator = start_simulator(
        stack, application, home, tmp_path,
        "--devices", "3", "--max", "2", "--commands-until-idle", "--record", str(record),
    )  # fmt: skip
    try:
        wait_until_taken(oceanconnect, revoked)
        opened = oceanconnect.create_cancel_task(revoked)
        assert opened.status_code == 201, opened.text
        after = {d: create_commands(oceanconnect, d, AFTER_TASK, url) for d in devices.values()}
        assert simulator.popen.poll() is None, "the simulator went idle before the test was done"
    except BaseException:
        simulator.popen.kill()
        raise
    assert simulator.wait() == 0, simulator.errors()
    task = oceanconnect.wait_cancel_task(opened.json()["taskId"])

    recorded = json.loads(record.read_text())
    received = {entry["commandId"]: entry for entry in recorded["received"]}
    assert len(received) == len(recorded["received"]), "a command was fetched twice"
    assert {e["nodeId"]: e["deviceId"] for e in received.values()} == devices
    queued = {d: before[d] + after[d] for d in devices.values()}
    statuses = final_statuses(oceanconnect, queued, received)

    # Every command has one final fate: taken and finished by the simulator, or canceled.
    canceled = {command_id for command_id, status in statuses.items() if status == "CANCELED"}
    assert canceled.isdisjoint(received)
    assert canceled | received.keys() == statuses.keys()
    expected_outcomes = {
        command_id: "FAILED" if fails(SEED, command_id, FAIL_RATE) else "SUCCESSFUL"
        for command_id in received
    }
    assert {c: e["outcome"] for c, e in received.items()} == expected_outcomes
    assert {c: statuses[c] for c in received} == expected_outcomes
    assert set(expected_outcomes.values()) == set(FINISHED)

    # The task canceled what was still queued for the revoked device when it opened, and only
    # that; the device took commands before the task and those queued after it.
    assert canceled <= set(before[revoked])
    assert not received.keys().isdisjoint(before[revoked]), "nothing taken before the task"
    assert set(after[revoked]) <= received.keys()
    assert (task["status"], task["totalCount"], task["cancelledCount"]) == (
        "SUCCESS",
        len(canceled),
        len(canceled),
    )
    assert task["cancelledCount"] > 0

    assert_summary(simulator.summary(), recorded, received)
    assert_callbacks(receiver, received, canceled)


def test_second_run_reuses_the_saved_credentials(
    stack: Stack, application: dict[str, str], oceanconnect: OceanConnect, tmp_path: Path
) -> None:
    home = tmp_path / "sim-home"
    first = simulate(stack, application, home, tmp_path, "--devices", "2", "--commands-until-idle")
    assert first.popen.returncode == 0, first.errors()
    before = saved_devices(home, application["appId"])
    assert oceanconnect.login().status_code == 200
    command_ids = create_commands(oceanconnect, before["sim-0001"], 3, None)

    second = simulate(stack, application, home, tmp_path, "--devices", "3", "--commands-until-idle")

    assert second.popen.returncode == 0, second.errors()
    assert "Error:" not in second.errors()
    after = saved_devices(home, application["appId"])
    assert sorted(after) == ["sim-0001", "sim-0002", "sim-0003"]
    assert {n: after[n] for n in before} == before
    assert credentials_path(home, application["appId"]).stat().st_mode & 0o777 == 0o600
    summary = second.summary()
    assert (summary["devices"], summary["fetched"], summary["errors"]) == (3, 3, 0)
    assert summary["succeeded"] + summary["failed"] == 3
    commands = commands_of(oceanconnect, before["sim-0001"])
    assert sorted(commands) == sorted(command_ids)
    assert {c["status"] for c in commands.values()} <= set(FINISHED)


def assert_refused(run: Simulator, message: str) -> None:
    """Exit code 1, `message` on stderr as click prints it, no traceback and no summary."""
    errors = run.errors()
    assert run.popen.returncode == 1, errors
    assert errors.startswith(f"Error: {message}"), errors
    assert "Traceback" not in errors
    assert run.stdout.read_text() == ""


def test_a_wrong_secret_or_a_taken_node_id_exits_1_with_a_message(
    stack: Stack, application: dict[str, str], oceanconnect: OceanConnect, tmp_path: Path
) -> None:
    home = tmp_path / "sim-home"
    wrong = {**application, "secret": "not-the-secret"}
    assert oceanconnect.login().status_code == 200
    assert oceanconnect.register_device("sim-0002").status_code == 200  # not the simulator's

    login = simulate(stack, wrong, home, tmp_path, "--devices", "2", "--duration", "5")
    registration = simulate(stack, application, home, tmp_path, "--devices", "4", "--duration", "5")

    assert_refused(login, "login refused: 401")
    assert_refused(registration, "nodeId sim-0002 is already registered but its psk is not in")
    # The devices registered beside the refused one keep their credentials for the next run.
    assert sorted(saved_devices(home, application["appId"])) == ["sim-0001", "sim-0003", "sim-0004"]
