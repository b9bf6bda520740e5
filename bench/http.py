"""Benchmark: requests/s and latency of the API's hot paths, each beside the bare `/healthz` of
the same gunicorn in the same run.

Run from the repository root: `.venv/bin/python -m bench.http` (or `make bench`; as a module,
because a script named http.py would shadow the standard library). It starts its own redis-server
and the web process exactly as `devcmd run` does (`devcmd.cli.run.process_commands`: gunicorn with
`devcmd.gunicorn_config`, JSON logs on, metrics on), with flow control on: the benchmark
application gets its own high limit, as `devcmd apps set-limit` gives it. Each endpoint is driven
by `wrk` (Debian package `wrk`) with 2 threads and 16 keep-alive connections. `wrk`'s own CPU
time is measured too: on a 2-core machine the load generator competes with the server, and a
generator that used most of its threads' time would be the limit, not the server.

Beside the calls it measures a reference, `one Redis round trip`: the same application with one
route added (written to a temporary module, `REFERENCE_SOURCE`) that answers as `/healthz` does
after one PING on the web process's own Redis pool. Its ratio is the floor every call that asks
Redis anything sits under on this machine, whatever the application does around it.

`--baseline DIR` also measures another checkout (e.g. a `git worktree` of an older commit, run
with this interpreter) in the same run: both stacks are started first and take turns round by
round, so old and new compare on the same machine in the same minutes (on the development VM
one call's ratio can move by 0.5 between two 3-second runs; only medians over rounds mean much).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from rich.console import Console
from rich.table import Table

from devcmd.cli.run import process_commands
from devcmd.config import Config
from devcmd.domain import auth, commands, devices
from devcmd.embedded import free_port, temporary_server
from devcmd.services import Services

console = Console(width=200)
REPO = Path(__file__).resolve().parents[1]
APP, SECRET = "bench", "bench-secret"
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {"level": 3}}
LISTED = 200  # commands on the device whose first page of 100 is listed
THREADS, CONNECTIONS = 2, 16
BUSY = 0.9  # share of its threads' wall time above which wrk itself may be the limit


@dataclass(frozen=True)
class Endpoint:
    """One measured call: what wrk sends, and which of the bare endpoint's figures it faces."""

    name: str
    method: str
    path: str
    body: dict | None = None
    headers: str = "app"  # "app" (app_key + bearer), "device" (Basic deviceId:psk) or "none"
    kind: str = "read"  # "bare", "create" or "read": which target its ratio is held to


@dataclass(frozen=True)
class Result:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    wrk_busy: float  # wrk's CPU time / (threads x wall time)
    server_us: float  # CPU time of gunicorn (master and workers) and Redis per request
    redis_us: float = 0.0  # of which Redis's


@dataclass(frozen=True)
class Fixture:
    """What the calls need: a token, and devices for each kind of call."""

    token: str
    create_device: str
    listed_device: str
    revoked_device: str
    polled_device: str
    polled_psk: str


def endpoints(f: Fixture) -> list[Endpoint]:
    """The calls measured against the bare endpoint, in order."""
    base = "/iocm/app/cmd/v1.4.0"
    return [
        Endpoint(
            "create command",
            "POST",
            f"{base}/deviceCommands",
            {"deviceId": f.create_device, "command": COMMAND},
            kind="create",
        ),
        Endpoint("query device", "GET", f"/iocm/app/dm/v1.4.0/devices/{f.listed_device}"),
        Endpoint(
            "query commands (100)",
            "GET",
            f"{base}/deviceCommands?deviceId={f.listed_device}&pageNo=0&pageSize=100",
        ),
        Endpoint(
            "open revocation task",
            "POST",
            f"{base}/deviceCommandCancelTasks",
            {"deviceId": f.revoked_device},
            kind="create",
        ),
        Endpoint(
            "device fetch (device API)",
            "GET",
            f"/southbound/v1/devices/{f.polled_device}/commands?max=10",
            headers="device",
        ),
    ]


BARE = Endpoint("bare /healthz", "GET", "/healthz", headers="none", kind="bare")
# The floor under every call that asks Redis anything: the bare endpoint's answer after one PING
# on the web process's own Redis pool, through the same gunicorn, hooks, metrics and access log.
# Its ratio is the most a call needing one round trip can reach, however little else it does.
REFERENCE = Endpoint(
    "one Redis round trip (reference)", "GET", "/bench/redis-ping", headers="none", kind="floor"
)
REFERENCE_MODULE = "devcmd_bench_reference"
REFERENCE_SOURCE = '''"""The application `devcmd run` serves, plus bench.http's reference route."""
from flask import current_app

from app import create_app as _create_app


def create_app():
    app = _create_app()

    @app.get("/bench/redis-ping")
    def redis_ping():
        current_app.extensions["devcmd"].redis.ping()
        return {"status": "ok", "checks": {"web": {"ok": True}}}

    return app
'''


def lua_script(endpoint: Endpoint, f: Fixture) -> str:
    """A wrk script sending `endpoint`'s method, headers and body on every request."""
    headers: dict[str, str] = {}
    if endpoint.headers == "app":
        headers = {"app_key": APP, "Authorization": f"Bearer {f.token}"}
    elif endpoint.headers == "device":
        import base64

        basic = base64.b64encode(f"{f.polled_device}:{f.polled_psk}".encode()).decode()
        headers = {"Authorization": f"Basic {basic}"}
    lines = [f"wrk.method = {json.dumps(endpoint.method)}"]
    if endpoint.body is not None:
        lines.append(f"wrk.body = {json.dumps(json.dumps(endpoint.body))}")
        headers["Content-Type"] = "application/json"
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    # Any answer but the expected 2xx makes the run invalid: count them where wrk can see them.
    lines.append("function response(status, headers, body)")
    lines.append('  if status >= 300 then io.stderr:write("status " .. status .. "\\n") end')
    lines.append("end")
    return "\n".join(lines) + "\n"


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * UNITS[unit]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by these processes, their live children, and their reaped
    children (gunicorn recycles a worker about every 100,000 requests)."""
    total = 0
    for pid in pids:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for number, each in enumerate([pid, *map(int, children)]):
            fields = Path(f"/proc/{each}/stat").read_text().rpartition(")")[2].split()
            # utime, stime (fields 14, 15); for the parent also cutime, cstime (16, 17)
            total += sum(int(v) for v in fields[11 : 15 if number == 0 else 13])
    return total / CLOCK_TICKS


def run_wrk(
    url: str, script: Path, seconds: int, server: list[int], redis: int | None = None
) -> Result:
    """One wrk run against the processes `server` (of which `redis` is the Redis server's);
    raises RuntimeError if any answer was not 2xx (or a socket error)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = process_cpu(server)
    redis_before = process_cpu([redis]) if redis else 0.0
    done = subprocess.run(
        [
            "wrk",
            f"-t{THREADS}",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            # A shared 2-core machine can stall a request for seconds; wrk's default of 2 s
            # would drop it and count an error instead of measuring its latency.
            "--timeout",
            "30s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = process_cpu(server) - server_before
    redis_cpu = process_cpu([redis]) - redis_before if redis else 0.0
    out = done.stdout
    if "Non-2xx" in out or "Socket errors" in out or done.stderr.strip():
        raise RuntimeError(f"wrk saw errors for {url}:\n{out}\n{done.stderr[:2000]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.MULTILINE))
    if len(percentiles) != 2:
        raise RuntimeError(f"unexpected wrk output for {url}:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    count = int(re.search(r"(\d+) requests in", out).group(1))
    return Result(
        rate,
        _ms(percentiles["50"]),
        _ms(percentiles["99"]),
        cpu / (THREADS * seconds),
        server_cpu / count * 1e6,
        redis_cpu / count * 1e6,
    )


def prepare(svc: Services) -> Fixture:
    """The application (with a high limit of its own, flow control still on), its token, and
    one device per kind of call."""
    auth.create_application(svc, app_id=APP, secret=SECRET)
    auth.set_rate_limit(svc, APP, 100_000_000)
    token = auth.login(svc, APP, SECRET)["accessToken"]
    made = {n: devices.register(svc, APP, n, None, None) for n in ("c", "l", "r", "p")}
    for _ in range(LISTED):
        commands.create(svc, APP, made["l"]["deviceId"], COMMAND, {})
    return Fixture(
        token,
        made["c"]["deviceId"],
        made["l"]["deviceId"],
        made["r"]["deviceId"],
        made["p"]["deviceId"],
        made["p"]["psk"],
    )


@contextmanager
def web(
    redis_url: str,
    app_dir: Path,
    log_path: Path,
    more_env: dict[str, str] | None = None,
    reference_in: Path | None = None,
) -> Iterator[tuple[str, int]]:
    """gunicorn as `devcmd run` starts it, run from `app_dir`, with `more_env` on top of its
    environment; yields its base URL and pid. With `reference_in` (a directory), it serves the
    same application with the `REFERENCE` route added, from a module written there."""
    port = free_port()
    config = Config().with_(port=port, redis_url=redis_url)
    command = process_commands(config)["web"]
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PORT": str(port),
        "LOG_FORMAT": "json",
        # Opening tasks enqueues sweeps nobody runs here: keep backpressure on, above the run.
        "REVOCATION_QUEUE_LIMIT": "10000000",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # gunicorn_config makes a fresh one
    env.update(more_env or {})
    if reference_in is not None:
        (reference_in / f"{REFERENCE_MODULE}.py").write_text(REFERENCE_SOURCE)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(reference_in), env.get("PYTHONPATH")])
        )
        command = [
            f"{REFERENCE_MODULE}:create_app()" if a == "app:create_app()" else a for a in command
        ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=app_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_up(base, process)
            yield base, process.pid
        finally:
            stop_group(process, 15)


def stop_group(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM the process group `process` leads, SIGKILL it after `timeout` seconds."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_up(base: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("gunicorn exited while starting")
        try:
            if requests.get(f"{base}/healthz", timeout=1).ok:
                return
        except requests.RequestException:  # not listening yet, or still importing
            pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer /healthz")


Round = dict[str, tuple[Result, float]]  # per call name: its result and ratio in one round


@contextmanager
def stack(app_dir: Path, workdir: Path) -> Iterator[Callable[[int], Round]]:
    """A fresh Redis and a fresh gunicorn from `app_dir`, warmed up; yields a function that
    runs one round of `seconds`-long wrk runs: bare, call 1, bare, call 2, ..., bare, so each
    call's ratio is taken against the bare runs just before and after it."""
    with temporary_server() as server:
        svc = Services.from_config(Config().with_(redis_url=server.url))
        try:
            fixture = prepare(svc)
        finally:
            svc.close()
        calls = [REFERENCE, *endpoints(fixture)]
        scripts = {}
        for endpoint in [BARE, *calls]:
            scripts[endpoint.name] = workdir / f"{app_dir.name}-call{len(scripts)}.lua"
            scripts[endpoint.name].write_text(lua_script(endpoint, fixture))
        log = workdir / f"web-{app_dir.name}.log"
        with web(server.url, app_dir, log, reference_in=workdir) as (base, pid):
            pids = [pid, server.process.pid]

            def wrk(endpoint: Endpoint, seconds: int) -> Result:
                url, script = base + endpoint.path, scripts[endpoint.name]
                return run_wrk(url, script, seconds, pids, server.process.pid)

            def one_round(seconds: int) -> Round:
                measured = {BARE.name: (wrk(BARE, seconds), 1.0)}
                before = measured[BARE.name][0]
                for endpoint in calls:
                    result = wrk(endpoint, seconds)
                    after = wrk(BARE, seconds)
                    bare_rate = (before.requests_per_s + after.requests_per_s) / 2
                    measured[endpoint.name] = (result, result.requests_per_s / bare_rate)
                    before = after
                return measured

            for endpoint in [BARE, *calls]:  # warm up: imports, connections, caches
                wrk(endpoint, 1)
            yield one_round


def measure(app_dirs: list[Path], seconds: int, rounds: int, workdir: Path) -> list[dict]:
    """Every endpoint of every checkout in `app_dirs`, each on its own Redis and gunicorn, all
    started first; the checkouts take turns round by round (and which goes first alternates),
    so a drift of this machine's speed over the minutes falls on all of them alike. Returns per
    checkout, per call name, its (result, ratio) of every round."""
    with ExitStack() as started:
        runners = [started.enter_context(stack(d, workdir)) for d in app_dirs]
        measured: list[dict[str, list]] = [{} for _ in app_dirs]
        for number in range(rounds):
            order = range(len(app_dirs)) if number % 2 == 0 else reversed(range(len(app_dirs)))
            for index in order:
                for name, figures in runners[index](seconds).items():
                    measured[index].setdefault(name, []).append(figures)
                console.print(
                    f"  round {number + 1}, {app_dirs[index]}: "
                    + ", ".join(f"{n} {v[-1][1]:.2f}" for n, v in measured[index].items())
                )
        return measured


TARGETS = {"create": 0.6, "read": 0.7}


def summarize(measured: dict[str, list]) -> dict[str, tuple[Result, float]]:
    """Per call: the median of its rounds' figures (each figure's own median)."""
    table = {}
    for name, runs in measured.items():
        results = [r for r, _ in runs]
        table[name] = (
            Result(
                statistics.median(r.requests_per_s for r in results),
                statistics.median(r.p50_ms for r in results),
                statistics.median(r.p99_ms for r in results),
                max(r.wrk_busy for r in results),
                statistics.median(r.server_us for r in results),
                statistics.median(r.redis_us for r in results),
            ),
            statistics.median(q for _, q in runs),
        )
    return table


def report(
    title: str,
    new: dict[str, tuple[Result, float]],
    old: dict[str, tuple[Result, float]] | None,
    kinds: dict[str, str],
) -> bool:
    """Print one table (old beside new when measured); True if every target is met.

    `CPU ratio` is the bare endpoint's server CPU per request over the call's: the throughput
    ratio a machine with nothing else running would show when the server is CPU-bound, and a
    steadier figure than requests/s when other work shares the cores. `Redis us/req` is the
    Redis server's part of the call's CPU, and `Redis ceiling` the CPU ratio the call would
    have if gunicorn spent nothing on it beyond what it spends on the bare request: the most
    any change to the web process alone could reach while Redis does the same work."""
    table = Table(title=title)
    columns = ["call", "req/s", "p50 ms", "p99 ms", "ratio", "target", "wrk busy", "CPU us/req"]
    columns += ["CPU ratio", "Redis us/req", "Redis ceiling"]
    if old:
        columns += ["old req/s", "old ratio", "old CPU us/req", "old CPU ratio"]
    for column in columns:
        table.add_column(column, justify="left" if column == "call" else "right")
    met = True
    bare_us = new["bare /healthz"][0].server_us
    for name, (result, ratio) in new.items():
        target = TARGETS.get(kinds[name])
        ok = target is None or ratio >= target
        met = met and ok
        row = [
            name,
            f"{result.requests_per_s:,.0f}",
            f"{result.p50_ms:.2f}",
            f"{result.p99_ms:.2f}",
            f"{ratio:.2f}",
            "" if target is None else f">= {target} {'ok' if ok else 'MISSED'}",
            f"{result.wrk_busy:.0%}" + (" (generator-bound?)" if result.wrk_busy > BUSY else ""),
            f"{result.server_us:,.0f}",
            f"{bare_us / result.server_us:.2f}",
            f"{result.redis_us:,.0f}",
            f"{ceiling(new['bare /healthz'][0], result):.2f}",
        ]
        if old:
            before, before_ratio = old[name]
            old_bare_us = old["bare /healthz"][0].server_us
            row += [f"{before.requests_per_s:,.0f}", f"{before_ratio:.2f}"]
            row += [f"{before.server_us:,.0f}", f"{old_bare_us / before.server_us:.2f}"]
        table.add_row(*row)
    console.print(table)
    return met


def ceiling(bare: Result, call: Result) -> float:
    """The CPU ratio of `call` if its web-process CPU per request were the bare request's."""
    return bare.server_us / (bare.server_us - bare.redis_us + call.redis_us)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="ratios: their median")
    parser.add_argument("--baseline", type=Path, help="another checkout to measure first")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench.http needs wrk: apt-get install wrk (Debian/Ubuntu package `wrk`)")
    workdir = Path(tempfile.mkdtemp(prefix="devcmd-bench-http-"))
    try:
        dirs = [REPO, *([args.baseline.resolve()] if args.baseline else [])]
        console.print("checkouts: " + ", ".join(map(str, dirs)) + " (the first is this one)")
        new, *rest = map(summarize, measure(dirs, args.seconds, args.rounds, workdir))
        old = rest[0] if rest else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    kinds = {e.name: e.kind for e in [BARE, REFERENCE, *endpoints(Fixture(*[""] * 6))]}
    met = report("devcmd HTTP benchmark (ratios to bare /healthz, one run)", new, old, kinds)
    floor, floor_ratio = new[REFERENCE.name]
    console.print(
        f"floor: one Redis round trip and nothing else answers at {floor_ratio:.2f} of the bare"
        f" endpoint (CPU ratio {new[BARE.name][0].server_us / floor.server_us:.2f}): no call"
        " that asks Redis at least once can do better on this machine"
    )
    if args.json:
        figures = {"new": {n: [r.__dict__, q] for n, (r, q) in new.items()}}
        if old:
            figures["old"] = {n: [r.__dict__, q] for n, (r, q) in old.items()}
        args.json.write_text(json.dumps(figures, indent=2))
    console.print("targets met" if met else "targets MISSED (see the table)")


if __name__ == "__main__":
    main()
