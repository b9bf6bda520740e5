"""The client and receiver kit can be used without the server: importing them loads neither
Flask nor Celery nor Redis, and the package says it is typed (PEP 561)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("flask", "celery", "kombu", "redis", "marshmallow", "gunicorn", "werkzeug")


@pytest.mark.parametrize("module", ["devcmd.client", "devcmd.receiver"])
def test_the_kit_imports_no_server_dependency(module: str) -> None:
    code = (
        f"import json, sys, {module}\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    loaded = set(json.loads(done.stdout))
    assert module.split(".")[0] in loaded
    assert loaded.isdisjoint(SERVER_ONLY), loaded & set(SERVER_ONLY)


def test_a_plain_install_is_the_kit_and_the_server_is_an_extra() -> None:
    """`pip install devcmd` pulls in neither Flask nor Celery nor Redis; `devcmd[server]` does,
    and the test and flower extras bring the server with them."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {
        dep.split(">")[0].split("[")[0].split(";")[0].strip() for dep in project["dependencies"]
    }
    assert names.isdisjoint(SERVER_ONLY), names & set(SERVER_ONLY)
    server = {dep.split(">")[0].split("[")[0] for dep in project["optional-dependencies"]["server"]}
    assert {"flask", "celery", "redis", "gunicorn"} <= server
    for extra in ("test", "flower"):
        assert "devcmd[server]" in project["optional-dependencies"][extra]


def test_the_kit_has_extras_and_a_py_typed_marker_shipped_as_package_data() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    assert {"client", "receiver"} <= extras.keys()
    assert any(dep.startswith("requests") for dep in extras["client"])
    assert any(dep.startswith("standardwebhooks") for dep in extras["receiver"])
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["devcmd"]
    assert (REPO / "devcmd" / "py.typed").is_file()
