"""The Procfile, docker-compose.yml and `devcmd run` start the same processes the same way."""

from __future__ import annotations

import runpy
import shlex
from pathlib import Path

import pytest
import yaml

from devcmd import gunicorn_config
from devcmd.cli.run import process_commands
from devcmd.config import Config

ROOT = Path(__file__).resolve().parents[2]
SCHEDULE = "<schedule>"  # where beat keeps its schedule file differs by design
NOT_IN_PROCFILE = {
    "redis",
    "flower",
    "redis-node-1",
    "redis-node-2",
    "redis-node-3",
    "redis-cluster-init",
}  # the Procfile expects an external Redis; Flower is optional


def normalized(argv: list[str]) -> list[str]:
    """`argv` with the beat schedule path and gunicorn's --bind (set through HOST/PORT in the
    deploy files) left out of the comparison."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--bind":
            skip = True
            continue
        out.append(SCHEDULE if i and argv[i - 1] == "--schedule" else arg)
    return out


def procfile() -> dict[str, list[str]]:
    """Process name -> argv of the program each Procfile line execs."""
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, command = line.split(":", 1)
        words = shlex.split(command.split("&&")[-1])
        assert words[0] == "exec", f"{name}: exec the program so honcho's signals reach it"
        processes[name] = normalized(words[1:])
    return processes


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_procfile_and_compose_run_the_same_processes_with_the_same_commands() -> None:
    services = compose()["services"]
    in_compose = {
        name: normalized(service["command"])
        for name, service in services.items()
        if name not in NOT_IN_PROCFILE
    }
    assert in_compose == procfile()


def test_devcmd_run_starts_what_the_procfile_does() -> None:
    """`devcmd run` uses this interpreter (`python -m gunicorn`, `python -m celery`)."""
    ran = {}
    for name, argv in process_commands(Config()).items():
        assert argv[1] == "-m"
        ran[name] = normalized(argv[2:])
    assert ran == procfile()


@pytest.mark.parametrize("name", ["web", "worker", "callbacks", "beat", "flower"])
def test_every_devcmd_service_reaches_redis_and_refuses_private_callbacks(name: str) -> None:
    environment = compose()["services"][name]["environment"]
    assert environment["REDIS_URL"] == "${REDIS_URL:-redis://redis:6379/0}"
    assert environment["CALLBACK_ALLOW_PRIVATE"] == "false"


def test_compose_keeps_redis_durable_and_checks_health() -> None:
    services = compose()["services"]
    redis = services["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert "healthcheck" in redis
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    for name in ("web", "worker", "callbacks", "beat"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_gunicorn_conf_py_at_the_root_gives_the_launchers_settings() -> None:
    """A bare `gunicorn 'app:create_app()'` in the repository reads ./gunicorn.conf.py."""
    root = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    settings = {k: v for k, v in vars(gunicorn_config).items() if not k.startswith("_")}
    settings = {k: v for k, v in settings.items() if not hasattr(v, "__spec__")}  # modules
    assert settings
    assert {k: root[k] for k in settings} == settings
    assert root["header_map"] == "dangerous"  # OceanConnect's app_key header survives
    assert root["max_requests"] > 0


def test_the_cluster_profile_runs_three_durable_masters_and_keeps_redis_as_the_broker() -> None:
    services = compose()["services"]
    nodes = [services[f"redis-node-{i}"] for i in (1, 2, 3)]
    for node in nodes:
        assert node["profiles"] == ["cluster"]
        command = " ".join(node["command"])
        assert "--cluster-enabled yes" in command
        assert "--appendonly yes" in command
        assert "--maxmemory-policy noeviction" in command
    init = " ".join(services["redis-cluster-init"]["command"])
    assert "--cluster create redis-node-1:6379 redis-node-2:6379 redis-node-3:6379" in init
    assert "redis" not in services["redis"].get("profiles", [])  # the broker always runs
    assert services["web"]["environment"]["CELERY_BROKER_URL"] == "${CELERY_BROKER_URL:-}"
