"""A device simulator (`devcmd simulate`): registers devices through the northbound API, then
drives the device API as real devices would: poll for commands, wait, acknowledge, report a result.

It talks HTTP only (no Redis), through `devcmd.client`: `Client` registers, `DeviceClient`
takes the commands. Devices are registered once per application and their
credentials kept in `$DEVCMD_HOME/simulated-devices-<appId>.json`, so later runs reuse them.
A small pool of threads serves every device from one due-time queue: a device's next poll, or
its acknowledgement `ack_delay` seconds after a fetch, is a job that runs when it is due.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import logging
import os
import re
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from devcmd.client import Client, DevcmdError, DeviceClient, Transport, Unreachable

log = logging.getLogger(__name__)

NODE_ID_TAKEN = "100416"
THROTTLED_WAITS = 1000  # registration waits out flow control (Retry-After) this many times
METRICS = ("fetched", "acked", "succeeded", "failed", "rejected", "errors")
DRAIN_GRACE = 10.0  # seconds to finish fetched commands after a stop, beyond ack_delay


class SimulationError(Exception):
    """The simulation cannot start (login refused, a device that cannot be registered...)."""


@dataclass(frozen=True)
class Settings:
    """What to simulate; `duration` None and `until_idle` False mean: until Ctrl-C."""

    base_url: str
    app_id: str
    secret: str
    devices: int = 10
    fail_rate: float = 0.0
    ack_delay: float = 0.1
    poll_interval: float = 1.0
    duration: float | None = None
    until_idle: bool = False
    batch: int = 10
    threads: int = 16
    seed: str = ""
    node_prefix: str = "sim-"
    home: Path = Path(".devcmd")
    record: Path | None = None


@dataclass
class Device:
    node_id: str
    device_id: str
    psk: str
    idle: bool = False
    dead: bool = False
    api: DeviceClient | None = field(default=None, repr=False)


def fails(seed: str, command_id: str, rate: float) -> bool:
    """Whether the simulated device reports FAILED for this command: a pure function of the
    seed and the command id, so a run is reproducible whatever the thread interleaving."""
    digest = hashlib.sha256(f"{seed}/{command_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def credentials_path(home: Path, app_id: str) -> Path:
    """Where the simulated devices of one application keep their deviceId and psk."""
    return home / f"simulated-devices-{re.sub(r'[^A-Za-z0-9_.-]', '_', app_id)}.json"


# --- registration (northbound) -------------------------------------------------------------


def register_devices(settings: Settings) -> list[Device]:
    """Register `settings.devices` devices (or reuse the saved credentials of those already
    registered); the credentials file is updated even if some registration fails."""
    path = credentials_path(settings.home, settings.app_id)
    saved = json.loads(path.read_text()) if path.exists() else {}
    nodes = [f"{settings.node_prefix}{i:04d}" for i in range(1, settings.devices + 1)]
    # Flow control (1010009) is waited out as often as it says: registering more devices than
    # the limit allows a minute just takes longer (`devcmd apps set-limit` raises it).
    api = Client(
        settings.base_url,
        settings.app_id,
        settings.secret,
        throttled_waits=THROTTLED_WAITS,
        pool_size=settings.threads,
    )
    try:
        api.login()
    except Unreachable as exc:
        api.close()
        raise SimulationError(f"cannot reach {settings.base_url}: {exc.error_desc}") from exc
    except DevcmdError as exc:
        api.close()
        refusal = f"{exc.http_status} {exc.error_code}: {exc.error_desc}"
        raise SimulationError(f"login refused: {refusal}") from exc
    with api, ThreadPoolExecutor(min(settings.threads, len(nodes))) as pool:
        futures = [pool.submit(_register, api, settings, n, saved.get(n)) for n in nodes]
    # Every registration has run: keep each psk the server handed out, even when another
    # registration failed, or the next run would find those nodeIds taken and their psk lost.
    devices = [f.result() for f in futures if f.exception() is None]
    for device in devices:
        saved[device.node_id] = {"deviceId": device.device_id, "psk": device.psk}
    _write_private(path, saved)
    for future in futures:
        if (error := future.exception()) is not None:
            raise error
    return devices


def _register(api: Client, settings: Settings, node_id: str, saved: dict | None) -> Device:
    try:
        registered = api.register_device(node_id)
    except DevcmdError as exc:
        if exc.error_code != NODE_ID_TAKEN:
            raise SimulationError(f"registering {node_id}: {exc}") from exc
        if saved:
            return Device(node_id, saved["deviceId"], saved["psk"])
        path = credentials_path(settings.home, settings.app_id)
        raise SimulationError(
            f"nodeId {node_id} is already registered but its psk is not in {path}: "
            "delete that device or choose another --node-prefix"
        ) from exc
    return Device(node_id, registered.device_id, registered.psk)


def _write_private(path: Path, value: object) -> None:
    """Write JSON atomically, readable by the owner only (it holds device secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # Created private rather than chmod-ed after writing: the secrets are never world-readable.
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # in case a stale tmp file was left with another mode
    with open(descriptor, "w") as file:
        file.write(json.dumps(value, indent=2, sort_keys=True))
    os.replace(tmp, path)


# --- scheduling ----------------------------------------------------------------------------


class Scheduler:
    """Jobs by due time for a pool of threads. After `close()` no new polls are accepted (and
    pending ones are dropped); `take()` returns None once the remaining jobs have run."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str, Callable[[], None]]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._running = 0
        self.closing = False
        self.aborted = False

    def at(self, delay: float, kind: str, job: Callable[[], None]) -> None:
        with self._cond:
            if self.closing and kind == "poll":
                return
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), kind, job))
            self._cond.notify()

    def take(self) -> Callable[[], None] | None:
        with self._cond:
            while not self.aborted:
                now = time.monotonic()
                if self._heap and self._heap[0][0] <= now:
                    self._running += 1
                    return heapq.heappop(self._heap)[3]
                if self.closing and not self._heap and self._running == 0:
                    self._cond.notify_all()
                    return None
                self._cond.wait(self._heap[0][0] - now if self._heap else None)
            return None

    def done(self) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closing = True
            self._heap = [job for job in self._heap if job[2] != "poll"]
            heapq.heapify(self._heap)
            self._cond.notify_all()

    def abort(self) -> None:
        with self._cond:
            self.aborted = True
            self._cond.notify_all()


@dataclass
class Tally:
    """Counts and the commands received, shared by the threads."""

    counts: Counter = field(default_factory=Counter)
    received: list[dict] = field(default_factory=list)
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, metric: str, n: int = 1) -> None:
        with self.lock:
            self.counts[metric] += n

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {metric: self.counts[metric] for metric in METRICS}


# --- the simulation ------------------------------------------------------------------------


class Simulation:
    """Devices driven by a thread pool; `run()` blocks until the stop condition or Ctrl-C."""

    def __init__(self, settings: Settings, devices: list[Device]) -> None:
        self.settings = settings
        self.devices = devices
        # One connection pool for every simulated device, one connection per thread at most.
        self.transport = Transport(settings.base_url, retries=0, pool_size=settings.threads)
        for device in devices:
            device.api = DeviceClient(
                settings.base_url, device.device_id, device.psk, transport=self.transport
            )
        self.scheduler = Scheduler()
        self.tally = Tally()
        self.seed = settings.seed or secrets.token_hex(4)

    def run(self, display: Callable[[float], None] | None = None) -> dict:
        """Simulate until done; returns the summary (also written to `settings.record`)."""
        start = time.monotonic()
        for device in self.devices:  # spread the first polls, as devices waking up would
            self._schedule_poll(device, self.settings.poll_interval * secrets.randbelow(1000) / 1e3)
        threads = [
            threading.Thread(target=self._work, name=f"sim-{i}", daemon=True)
            for i in range(self.settings.threads)
        ]
        for thread in threads:
            thread.start()
        stopped_by = "interrupt"
        with suppress(KeyboardInterrupt):
            stopped_by = self._wait(start, display)
        self._stop(threads)
        self.transport.close()
        summary = self.summary(time.monotonic() - start, stopped_by)
        if self.settings.record:
            with self.tally.lock:
                received = list(self.tally.received)
            _write_private(self.settings.record, {"summary": summary, "received": received})
        return summary

    def _wait(self, start: float, display: Callable[[float], None] | None) -> str:
        duration = self.settings.duration
        while True:
            elapsed = time.monotonic() - start
            if display:
                display(elapsed)
            if duration is not None and elapsed >= duration:
                return "duration"
            if self.settings.until_idle and self._idle():
                return "idle"
            time.sleep(0.05 if duration is None else min(0.05, max(0.0, duration - elapsed)))

    def _idle(self) -> bool:
        with self.tally.lock:
            if self.tally.in_flight:
                return False
        return all(d.idle or d.dead for d in self.devices)

    def _stop(self, threads: list[threading.Thread]) -> None:
        """Take no new commands; finish those fetched (a second Ctrl-C abandons them)."""
        self.scheduler.close()
        deadline = time.monotonic() + self.settings.ack_delay + DRAIN_GRACE
        with suppress(KeyboardInterrupt):
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
        self.scheduler.abort()

    def _work(self) -> None:
        while (job := self.scheduler.take()) is not None:
            try:
                job()
            except Exception:
                log.exception("simulated device job failed")
                self.tally.add("errors")
            finally:
                self.scheduler.done()

    def _schedule_poll(self, device: Device, delay: float) -> None:
        self.scheduler.at(delay, "poll", lambda: self._poll(device))

    def _poll(self, device: Device) -> None:
        try:
            taken = device.api.fetch(self.settings.batch)
        except DevcmdError as exc:
            log.warning("%s: fetch failed: %s", device.node_id, exc)
            self._fetch_failed(device, exc.http_status)
            return
        commands = [
            {
                "commandId": c.command_id,
                "serviceId": c.service_id,
                "method": c.method,
                "paras": c.paras,
            }
            for c in taken
        ]
        device.idle = not commands
        if not commands:
            self._schedule_poll(device, self.settings.poll_interval)
            return
        entries = self._received(device, commands)
        self.scheduler.at(self.settings.ack_delay, "finish", lambda: self._finish(device, entries))

    def _fetch_failed(self, device: Device, status: int | None) -> None:
        self.tally.add("errors")
        if status == 401:
            log.error("%s: credentials refused (401); device stopped", device.node_id)
            device.dead = True
            return
        self._schedule_poll(device, max(self.settings.poll_interval, 0.5))

    def _received(self, device: Device, commands: list[dict]) -> list[dict]:
        """Count and record a fetch; returns one record per command, its outcome still open."""
        entries = [
            {"nodeId": device.node_id, "deviceId": device.device_id, **c, "outcome": None}
            for c in commands
        ]
        with self.tally.lock:
            self.tally.counts["fetched"] += len(entries)
            self.tally.in_flight += len(entries)
            self.tally.received += entries
        return entries

    def _finish(self, device: Device, entries: list[dict]) -> None:
        """Acknowledge each command, then report its result; then poll again at once."""
        try:
            for entry in entries:
                entry["outcome"] = self._complete(device, entry["commandId"])
        finally:
            with self.tally.lock:
                self.tally.in_flight -= len(entries)
            self._schedule_poll(device, 0)

    def _complete(self, device: Device, command_id: str) -> str:
        """Ack, then report; returns SUCCESSFUL, FAILED, REJECTED (404/409) or ERROR."""
        failed = fails(self.seed, command_id, self.settings.fail_rate)
        code = "FAILED" if failed else "SUCCESSFUL"
        detail = {"simulated": True, "nodeId": device.node_id}
        try:
            device.api.ack(command_id)
            self.tally.add("acked")
            device.api.result(command_id, code, detail)
        except DevcmdError as exc:
            outcome = self._refused(exc.http_status)
            if outcome == "ERROR":
                log.warning("%s: command %s: %s", device.node_id, command_id, exc)
            return outcome
        self.tally.add("failed" if failed else "succeeded")
        return code

    def _refused(self, status: int | None) -> str:
        """404/409: the command is no longer the device's to touch (rejected); else an error."""
        if status in (404, 409):
            self.tally.add("rejected")
            return "REJECTED"
        self.tally.add("errors")
        return "ERROR"

    def summary(self, elapsed: float, stopped_by: str) -> dict:
        counts = self.tally.snapshot()
        per_second = {m: round(counts[m] / elapsed, 1) if elapsed else 0.0 for m in METRICS}
        return {
            "devices": len(self.devices),
            "stoppedBy": stopped_by,
            "elapsedSeconds": round(elapsed, 3),
            **counts,
            "perSecond": per_second,
            "seed": self.seed,
        }


# --- the live display ----------------------------------------------------------------------


class Display:
    """A rich table of totals and rates over the last second, redrawn a few times a second."""

    def __init__(self, simulation: Simulation, console: Console) -> None:
        self.simulation = simulation
        self.live = Live(console=console, refresh_per_second=4, transient=False)
        self.history: deque[tuple[float, dict[str, int]]] = deque()

    def __call__(self, elapsed: float) -> None:
        counts = self.simulation.tally.snapshot()
        self.history.append((elapsed, counts))
        while len(self.history) > 1 and elapsed - self.history[0][0] > 1.0:
            self.history.popleft()
        then, before = self.history[0]
        span = elapsed - then
        table = Table(title=self._title(elapsed), title_justify="left")
        table.add_column("")
        table.add_column("total", justify="right")
        table.add_column("per second", justify="right")
        for metric in METRICS:
            rate = (counts[metric] - before[metric]) / span if span > 0 else 0.0
            table.add_row(metric, f"{counts[metric]:,}", f"{rate:,.1f}")
        self.live.update(table)

    def _title(self, elapsed: float) -> str:
        sim = self.simulation
        idle = sum(d.idle for d in sim.devices)
        return (
            f"devcmd simulate: {len(sim.devices)} devices ({idle} idle), "
            f"{sim.tally.in_flight} in flight, {elapsed:.1f} s"
        )

    @contextmanager
    def shown(self) -> Iterator[Display]:
        with self.live:
            yield self


def run(settings: Settings, console: Console | None = None) -> dict:
    """Register (or reuse) the devices, simulate them, return the summary.

    Raises SimulationError if the application cannot log in or a device cannot be registered.
    """
    devices = register_devices(settings)
    simulation = Simulation(settings, devices)
    display = Display(simulation, console or Console(stderr=True))
    with display.shown():
        summary = simulation.run(display)
        display(summary["elapsedSeconds"])
    return summary
