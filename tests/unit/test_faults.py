"""Which store failures are the store's trouble (503, retry) and which are bugs (500), how each
dialect answers them, and that the API document lists the 503 on every operation that touches
the store. Real servers in trouble: tests/integration/test_faults.py."""

from __future__ import annotations

import fakeredis
import pytest
from kombu.exceptions import OperationalError
from redis import exceptions as rx

from devcmd import faults
from devcmd.config import Config
from devcmd.services import Services
from devcmd.store import keys
from tests.unit.conftest import NullBroker

DEVICE = "/iocm/app/dm/v1.4.0/devices/{}"
ENOS_GET = "/connect-service/v2.1/commands?action=get&orgId=app-a&assetId=a1&commandId=c1"
STORELESS_TAGS = {"health", "metrics", "openapi"}


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def svc(server) -> Services:
    """The unit tests' services, on a fake server this test can take down."""
    config = Config().with_(rate_limit_per_minute=1_000_000)
    return Services(config, fakeredis.FakeRedis(server=server, decode_responses=True), NullBroker())


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (rx.ConnectionError("Error 111 connecting"), "ConnectionError"),
        (rx.TimeoutError("Timeout reading from socket"), "TimeoutError"),
        (rx.BusyLoadingError("Redis is loading the dataset in memory"), "LOADING"),
        (rx.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"), "OOM"),
        (rx.ReadOnlyError("You can't write against a read only replica."), "READONLY"),
        (rx.TryAgainError("Multiple keys request during rehashing of slot"), "TRYAGAIN"),
        (rx.ClusterDownError("The cluster is down"), "CLUSTERDOWN"),
        (rx.ResponseError("Error running script: @user_script:42: -OOM command not"), "OOM"),
        (rx.ResponseError("NOREPLICAS Not enough good replicas to write."), "NOREPLICAS"),
        (OperationalError("Error 111 connecting to the broker"), "OperationalError"),
        (rx.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"), None),
        (rx.ResponseError("ERR Error running script: attempt to compare nil"), None),
        (rx.DataError("Invalid input of type: 'dict'"), None),
        (ValueError("not a store error"), None),
    ],
)
def test_the_store_in_trouble_is_told_from_a_bug(exc: Exception, expected: str | None) -> None:
    assert faults.cause(exc) == expected


def test_a_timeout_is_no_refusal_so_nothing_is_undone() -> None:
    """After a timeout the command may have run: only a refusal lets a caller undo."""
    assert faults.refusal(rx.TimeoutError("Timeout reading from socket")) is None
    undone = []
    with pytest.raises(rx.TimeoutError), faults.undone_if_refused(lambda: undone.append(1)):
        raise rx.TimeoutError("Timeout reading from socket")
    with pytest.raises(rx.OutOfMemoryError), faults.undone_if_refused(lambda: undone.append(2)):
        raise rx.OutOfMemoryError("command not allowed when used memory > 'maxmemory'")
    assert undone == [2]


def test_a_step_beat_redoes_is_deferred_on_store_trouble_but_a_bug_is_raised() -> None:
    with faults.redone_later("flush"):
        raise rx.ConnectionError("Error 111 connecting")
    with pytest.raises(ValueError, match="bug"), faults.redone_later("flush"):
        raise ValueError("bug")


def test_a_server_down_answers_503_in_both_dialects_and_a_bug_500(
    client, server, svc, headers
) -> None:
    server.connected = False
    oceanconnect = client.get(DEVICE.format("d1"), headers=headers)
    assert oceanconnect.status_code == 503
    assert oceanconnect.json["error_code"] == "100503"
    assert oceanconnect.headers["Retry-After"] == str(svc.config.storage_retry_after)
    enos = client.get(ENOS_GET, headers=headers)
    assert enos.status_code == 503
    assert (enos.json["code"], enos.json["data"]) == (99503, None)
    assert enos.json["requestId"] == enos.headers["X-Request-Id"]
    assert enos.headers["Retry-After"] == str(svc.config.storage_retry_after)

    server.connected = True
    # A key of the wrong type: the server answers WRONGTYPE, a bug of ours, not its trouble.
    svc.redis.set(keys.device("app-a", "d1"), "not a hash")
    bug = client.get(DEVICE.format("d1"), headers=headers)
    assert (bug.status_code, bug.json["error_code"]) == (500, "100001")


def test_every_operation_that_touches_the_store_documents_its_503(client) -> None:
    document = client.get("/openapi.json").json
    seen = 0
    for path, item in document["paths"].items():
        for method, operation in ((m, o) for m, o in item.items() if m != "parameters"):
            if operation["tags"][0] in STORELESS_TAGS:
                continue
            seen += 1
            unavailable = operation["responses"].get("503")
            assert unavailable, (path, method)
            assert "Retry-After" in unavailable["headers"], (path, method)
            code = "99503" if path.startswith("/connect-service/") else "100503"
            assert code in unavailable["description"], (path, method)
    assert seen >= 15
