"""Profile: where one process's time goes for each call `bench.http` measures.

Run from the repository root: `.venv/bin/python -m bench.profile [--calls 2000] [--only NAME]`.
It starts its own redis-server, builds the Flask app as gunicorn's workers do (JSON access log
on, metrics on, flow control on) and calls its WSGI entry point directly, one request after
another, under pyinstrument; then prints, per call, the microseconds per request and the
profile's heaviest frames, and the Redis commands each call sent (`INFO commandstats`). No
gunicorn and no sockets: what is left is the application's own cost, the part this repository
can change.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import tempfile
import time
from base64 import b64encode
from collections import Counter

# As in gunicorn's workers, metrics go to multiprocess files: set before prometheus_client loads.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="devcmd-prof-"))

import orjson
from pyinstrument import Profiler

from bench.http import BARE, Endpoint, Fixture, endpoints, prepare
from devcmd import logs
from devcmd.config import Config
from devcmd.embedded import temporary_server
from devcmd.services import Services


def environ(endpoint: Endpoint, f: Fixture) -> tuple[dict, bytes]:
    """A WSGI environ as gunicorn builds it for `endpoint` (without the body stream)."""
    path, _, query = endpoint.path.partition("?")
    env = {
        "REQUEST_METHOD": endpoint.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
        "HTTP_HOST": "127.0.0.1:8000",
    }
    if endpoint.headers == "app":
        env["HTTP_APP_KEY"] = "bench"
        env["HTTP_AUTHORIZATION"] = f"Bearer {f.token}"
    elif endpoint.headers == "device":
        basic = b64encode(f"{f.polled_device}:{f.polled_psk}".encode()).decode()
        env["HTTP_AUTHORIZATION"] = f"Basic {basic}"
    body = b"" if endpoint.body is None else orjson.dumps(endpoint.body)
    if body:
        env["CONTENT_TYPE"] = "application/json"
        env["CONTENT_LENGTH"] = str(len(body))
    return env, body


def call(app, env: dict, body: bytes) -> str:
    """One request through the WSGI app; returns its status line."""
    status: list[str] = []
    request = {**env, "wsgi.input": io.BytesIO(body)}
    for _ in app(request, lambda s, h, e=None: status.append(s)):
        pass
    return status[0]


def commandstats(svc: Services) -> dict[str, tuple[int, int]]:
    """Per Redis command: (calls, microseconds the server spent in them) so far."""
    stats = svc.redis.info("commandstats").items()
    return {k.removeprefix("cmdstat_"): (v["calls"], v["usec"]) for k, v in stats}


def print_heaviest(profiler: Profiler, calls: int, count: int) -> None:
    """The `count` functions with the most time under them (each counted once per stack, so
    recursion is not counted twice), in microseconds per request, with their own (self) time."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()

    def walk(frame, above: frozenset[str]) -> None:
        name = f"{frame.function} {frame.file_path_short}:{frame.line_no}"
        if frame.function == "[self]":
            return
        if name not in above:
            inclusive[name] += frame.time
        own[name] += frame.total_self_time
        for child in frame.children:
            walk(child, above | {name})

    root = profiler.last_session.root_frame()
    walk(root, frozenset())
    print(f"    {'us/req':>7} {'self':>6}  function")
    for name, seconds in inclusive.most_common(count):
        print(f"    {seconds / calls * 1e6:7.0f} {own[name] / calls * 1e6:6.0f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="requests per endpoint")
    parser.add_argument("--only", help="profile only the call whose name contains this")
    parser.add_argument("--frames", type=int, default=40, help="profile lines to print")
    args = parser.parse_args()
    from app import create_app

    with temporary_server() as server:
        config = Config.from_env().with_(redis_url=server.url, revocation_queue_limit=10**7)
        svc = Services.from_config(config)
        fixture = prepare(svc)
        logs.configure("json", "INFO")
        # The log lines are formatted and written as in production, to a file instead of stderr.
        sink = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
        logging.getLogger().handlers[0].setStream(sink)
        app = create_app(services=svc)
        for endpoint in [BARE, *endpoints(fixture)]:
            if args.only and args.only not in endpoint.name:
                continue
            env, body = environ(endpoint, fixture)
            for _ in range(50):  # warm up: caches, connections
                status = call(app, env, body)
            if not status.startswith("2"):
                raise RuntimeError(f"{endpoint.name}: {status}")
            stats = commandstats(svc)
            profiler = Profiler(interval=0.0002)
            started, cpu = time.perf_counter(), time.process_time()
            with profiler:
                for _ in range(args.calls):
                    call(app, env, body)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            after = commandstats(svc)
            calls = {k: (n - stats.get(k, (0, 0))[0]) / args.calls for k, (n, _) in after.items()}
            calls = {k: round(v, 2) for k, v in calls.items() if v >= 0.5 and k != "info"}
            server = sum(
                us - stats.get(k, (0, 0))[1] for k, (_, us) in after.items() if k != "info"
            )
            per = 1e6 / args.calls
            print(
                f"\n=== {endpoint.name}: {seconds * per:,.0f} us/request, of which this process's"
                f" CPU {cpu * per:,.0f} us (the profiler's included); Redis commands"
                f" {server / args.calls:,.0f} us"
            )
            print(f"    Redis commands per request: {calls}")
            print_heaviest(profiler, args.calls, args.frames)
        svc.close()


if __name__ == "__main__":
    main()
