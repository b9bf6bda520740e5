"""The slot guard itself: a transaction or script spanning two cluster slots fails on either
back end (the guard on a single server, the server itself on a cluster), one slot passes."""

from __future__ import annotations

import pytest
from redis import Redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException, ResponseError

from tests import backends
from tests.slot_guard import CrossSlot

pytestmark = [pytest.mark.integration, pytest.mark.backends(*backends.CLUSTERED)]

SPANNING = (CrossSlot, ResponseError, RedisClusterException)


def test_a_transaction_over_two_slots_fails(svc):
    one = svc.redis.pipeline(transaction=True)
    one.set("dc:{a}:x", 1)
    one.incr("dc:{a}:y")
    assert one.execute()[1] == 1  # (a cluster transaction answers SET with "OK", not True)
    two = svc.redis.pipeline(transaction=True)
    two.set("dc:{a}:x", 1)
    two.set("dc:{b}:x", 1)
    with pytest.raises(SPANNING):
        two.execute()


def test_a_script_over_two_slots_fails(svc):
    script = svc.redis.register_script("return #KEYS")
    assert script(keys=["dc:{a}:x", "dc:{a}:y"]) == 2
    with pytest.raises(SPANNING):
        script(keys=["dc:{a}:x", "dc:{b}:y"])


def test_a_pipeline_that_is_not_a_transaction_may_span_slots(svc):
    pipe = svc.redis.pipeline(transaction=False)
    pipe.set("dc:{a}:x", 1)
    pipe.set("dc:{b}:x", 2)
    pipe.execute()
    assert svc.redis.mget("dc:{a}:x") + svc.redis.mget("dc:{b}:x") == ["1", "2"]


def test_the_factory_gives_a_cluster_client_that_spreads_keys(svc, redis_backend):
    """On the cluster back end the store's client is a RedisCluster and device keys land on
    every master; on a single server it is a plain Redis."""
    if redis_backend != "cluster":
        assert type(svc.redis) is Redis
        return
    assert isinstance(svc.redis, RedisCluster)
    for i in range(30):
        svc.redis.set(f"dc:{{app:dev-{i}}}:device", i)
    per_master = [
        len(node.redis_connection.keys("dc:{app:*")) for node in svc.redis.get_primaries()
    ]
    assert len(per_master) == 3
    assert all(count > 0 for count in per_master)
