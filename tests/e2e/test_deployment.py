"""The web process started with the product's gunicorn settings (as the Procfile, compose file
and `devcmd run` start it) keeps OceanConnect's underscored `app_key` header."""

from __future__ import annotations

import pytest

from devcmd.embedded import free_port
from tests.e2e.oceanconnect import OceanConnect
from tests.e2e.processes import PROCESSES, child_env, start_web, wait_ready

pytestmark = pytest.mark.e2e


@pytest.fixture
def documented_web(request: pytest.FixtureRequest, redis_url: str, tmp_path) -> str:
    """gunicorn with `devcmd.gunicorn_config` and no Celery worker; yields its base URL."""
    port = free_port()
    env = child_env(redis_url, tmp_path / "home")
    web = start_web(port, env, tmp_path)
    request.node.stash[PROCESSES] = [web]
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_ready(base_url, [web], path="/healthz")  # no worker here: liveness only
        yield base_url
    finally:
        web.stop()


def test_documented_gunicorn_command_keeps_the_app_key_header(
    documented_web: str, application: dict[str, str]
) -> None:
    client = OceanConnect(documented_web, application["appId"], application["secret"])
    try:
        assert client.login().status_code == 200
        registered = client.register_device("meter-documented")
    finally:
        client.close()

    assert registered.status_code == 200, registered.text
