"""Whatever an EnOS client sends, the answer is the EnOS envelope with HTTP 200, never a 500."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_validation import json_values

ENOS = "/connect-service/v2.1/commands"
ENVELOPE = {"code", "msg", "submsg", "requestId", "data"}

texts = st.sampled_from(
    ["1", "0", "-1", "172800", "61", "30", "s", "http://127.0.0.1/cb"]
) | st.text(max_size=70)
queries = st.fixed_dictionaries(
    {
        "action": st.sampled_from(["cancel", "get", "search", "invokeService", "x"]),
        "orgId": st.just("app-a"),
        "assetId": st.just("asset-1"),
    },
    optional=dict.fromkeys(
        ["commandId", "serviceId", "pendingTtl", "timeout", "callbackUrl"],
        texts,
    ),
) | st.dictionaries(
    st.sampled_from(["action", "orgId", "assetId", "productKey", "deviceKey", "commandId"]), texts
)
bodies = (
    st.just({})
    | json_values
    | st.fixed_dictionaries(
        {},
        optional={
            "expression": json_values | st.text(max_size=80),
            "pagination": json_values
            | st.fixed_dictionaries(
                {}, optional=dict.fromkeys(["pageNo", "pageSize"], json_values)
            ),
            "projection": json_values,
            "inputData": json_values,
        },
    )
)


@pytest.fixture
def enos_device(client, headers) -> None:
    body = {"nodeId": "n1", "assetId": "asset-1", "productKey": "pk", "deviceKey": "dk"}
    client.post("/iocm/app/reg/v1.1.0/deviceCredentials", json=body, headers=headers)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=queries, body=bodies, method=st.sampled_from(["GET", "POST"]))
def test_arbitrary_requests_get_the_envelope_never_a_5xx(
    client, svc, headers, enos_device, query, body, method
):
    svc.config = svc.config.with_(enos_invoke_wait=0)
    raw = json.dumps(body).encode()
    reply = client.open(f"{ENOS}?{urlencode(query)}", method=method, data=raw, headers=headers)
    assert reply.status_code == 200
    assert set(reply.json) >= ENVELOPE
    assert reply.json["code"] != 99500
    assert (reply.json["code"] == 0) == (reply.json["submsg"] is None)
