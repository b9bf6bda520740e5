"""devcmd's enqueues (`Broker`: sweep, flush, deliver) on a real Redis broker: the message they
put is the one Celery's own `send_task` puts, on the same queue, and publishing survives the
broker's restart and threads, and a broker on a Unix socket (`redis+socket://`)."""

from __future__ import annotations

import json
import threading

import pytest
import redis
from kombu.exceptions import OperationalError

from devcmd.broker import _ReusedClient, make_celery
from devcmd.config import Config
from devcmd.embedded import RedisServer, free_port
from devcmd.jobs import DELIVER, FLUSH, QUEUE_CALLBACKS, QUEUE_REVOCATIONS, SWEEP, Broker
from devcmd.services import Services

pytestmark = pytest.mark.integration
# Fields that name one message (its id, and the ids derived from it), not its content.
IDS = {"id", "root_id", "correlation_id", "delivery_tag", "eta"}


def last_message(client: redis.Redis, queue: str) -> dict:
    """The newest message of `queue`, its ids blanked (kombu pushes on the left)."""
    message = json.loads(client.lindex(queue, 0))
    for part in (message["headers"], message["properties"]):
        for name in IDS & part.keys():
            part[name] = part[name] and "<id>"
    return message


@pytest.mark.parametrize(
    ("send", "celery_args", "queue"),
    [
        (lambda b: b.sweep("app", "dev", "task"), (SWEEP, ["app", "dev", "task"]), "revocations"),
        (lambda b: b.flush("app", "dev", countdown=30), (FLUSH, ["app", "dev"]), "callbacks"),
        (
            lambda b: b.deliver([["app", "dev", "n1"]]),
            (DELIVER, [[["app", "dev", "n1"]]]),
            "callbacks",
        ),
        (  # arguments whose repr is longer than Celery's argsrepr_maxsize: shortened as it does
            lambda b: b.deliver([["app", "dev", f"n{n:030}"] for n in range(40)]),
            (DELIVER, [[["app", "dev", f"n{n:030}"] for n in range(40)]]),
            "callbacks",
        ),
    ],
    ids=["sweep", "flush with countdown", "deliver", "deliver of many"],
)
def test_an_enqueue_puts_the_message_celery_send_task_puts(svc, send, celery_args, queue):
    broker = Broker(svc.broker.celery)
    send(broker)
    ours = last_message(svc.broker_redis, queue)
    name, args = celery_args
    countdown = 30 if name == FLUSH else None
    svc.broker.celery.send_task(name, args=args, countdown=countdown)
    celerys = last_message(svc.broker_redis, queue)
    assert ours == celerys
    assert (name == FLUSH) == (ours["headers"]["eta"] is not None)  # the countdown is kept
    assert svc.broker_redis.llen(queue) == 2
    other = QUEUE_REVOCATIONS if queue == QUEUE_CALLBACKS else QUEUE_CALLBACKS
    assert svc.broker_redis.llen(other) == 0


def test_the_arguments_header_is_their_python_repr(svc):
    """`argsrepr` (what Flower and the worker's log show) is Python's repr of the arguments:
    Celery's saferepr would leave a quote or a newline in an id unescaped."""
    Broker(svc.broker.celery).sweep("app", "it's\na device", "task")
    headers = last_message(svc.broker_redis, QUEUE_REVOCATIONS)["headers"]
    assert headers["argsrepr"] == repr(["app", "it's\na device", "task"])
    assert headers["kwargsrepr"] == "{}"


def test_threads_publishing_at_once_each_put_every_message_whole(svc):
    celery = svc.broker.celery
    barrier = threading.Barrier(4)

    def publish(thread: int) -> None:
        barrier.wait()
        for number in range(25):
            celery.publish(SWEEP, ["app", "dev", f"{thread}-{number}"])

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    messages = svc.broker_redis.lrange(QUEUE_REVOCATIONS, 0, -1)
    tasks = {json.loads(m)["headers"]["argsrepr"] for m in messages}
    assert tasks == {f"['app', 'dev', '{t}-{n}']" for t in range(4) for n in range(25)}
    celery.close()  # releases every thread's connection; this thread makes a new one
    celery.publish(SWEEP, ["app", "dev", "after-close"])
    assert svc.broker_redis.llen(QUEUE_REVOCATIONS) == 101


def test_publishing_goes_on_after_the_broker_restarts(server):
    """A publish while the broker is down raises kombu's OperationalError after the retry
    policy (what the callers' fault handling expects), every time; once it is back, or after a
    restart between two publishes, the thread publishes again, still with the lean channel."""
    celery = make_celery(Config().with_(redis_url=server.url))
    try:
        celery.publish(SWEEP, ["app", "dev", "before"])
        server.kill()
        for _ in range(2):
            with pytest.raises(OperationalError):
                celery.publish(SWEEP, ["app", "dev", "while-down"])
        server.start()
        celery.publish(SWEEP, ["app", "dev", "after"])
        server.kill()
        server.start()  # the thread's connection is now dead without its knowing
        celery.publish(SWEEP, ["app", "dev", "after-restart"])
        with redis.Redis.from_url(server.url) as client:
            messages = client.lrange("revocations", 0, -1)
        tasks = {json.loads(m)["headers"]["argsrepr"] for m in messages}
        assert "['app', 'dev', 'after-restart']" in tasks  # (a SIGKILL may lose the one before)
        channel = celery.publisher._producer()[0].channel
        assert type(channel).conn_or_acquire is _ReusedClient.conn_or_acquire  # still the lean one
    finally:
        celery.close()


def test_a_broker_on_a_unix_socket_takes_kombus_redis_socket_url(tmp_path):
    """CELERY_BROKER_URL=redis+socket://... (what the configuration check points a unix://
    broker to) publishes through the socket into the database it names, and the queue-depth
    reader reads that database."""
    sock = tmp_path / "r.sock"
    extra = ("--unixsocket", str(sock), "--unixsocketperm", "700")
    server = RedisServer(tmp_path, free_port(), appendonly=False, extra_args=extra).start()
    config = Config().with_(
        redis_url=server.url, celery_broker_url=f"redis+socket://{sock}?virtual_host=1"
    )
    try:
        svc = Services.from_config(config)  # runs the configuration check
        svc.broker.sweep("app", "dev", "task")
        assert svc.broker_redis.llen(QUEUE_REVOCATIONS) == 1
        with redis.Redis(port=server.port, db=1) as tcp:
            assert json.loads(tcp.lindex(QUEUE_REVOCATIONS, 0))["headers"]["task"] == SWEEP
        assert svc.redis.llen(QUEUE_REVOCATIONS) == 0  # not the data store's database 0
        svc.close()
    finally:
        server.stop()
