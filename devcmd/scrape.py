"""The `/metrics` exposition: this machine's processes' metrics (`devcmd.metrics`) plus the
service-wide gauges (queue depths, index sizes, live workers) read from Redis at scrape time by
`BacklogCollector`, never stored. Kept apart from `devcmd.metrics` so that the domain, which
counts into those metrics, and this module, which reads the domain, do not import each other."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from redis import RedisError

from devcmd import metrics_files
from devcmd.domain import health
from devcmd.services import Services


def exposition(svc: Services) -> bytes:
    """The text exposition for one scrape: this machine's processes (the multiprocess directory
    if configured, else this process) plus the service gauges read from Redis now."""
    registry = CollectorRegistry()
    if svc.config.prometheus_multiproc_dir:
        metrics_files.Collector(registry, path=svc.config.prometheus_multiproc_dir)
    else:
        registry.register(_ThisProcess())
    registry.register(BacklogCollector(svc))
    return generate_latest(registry)


class _ThisProcess:
    """The default registry (this process's metrics) as one collector of a scrape registry."""

    def collect(self) -> Iterator[Metric]:
        return REGISTRY.collect()


class BacklogCollector:
    """Service-wide gauges, each an O(1) Redis read: queue depths and limits, revocation tasks
    not yet finished, notifications due and failed, outboxes to drain, devices with timers, live
    workers. Commands by status are left out: no global counter exists, and keeping one would
    make every per-device Lua script write a key outside its device's hash slot."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("devcmd_redis_up", "1 when Redis and the broker answered.")
        try:
            families = list(self._families())
        except RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[Metric]:
        yield from self._queues()
        for name, value in self.svc.health.backlog().items():
            yield GaugeMetricFamily(f"devcmd_{name}", _BACKLOG_HELP[name], value=value)
        alive = health.live_workers(self.svc)
        yield GaugeMetricFamily("devcmd_workers_alive", "Workers with a recent heartbeat.", alive)
        state = health.redis_state(self.svc)
        if state is None:  # the server refuses INFO
            return
        yield GaugeMetricFamily(
            "devcmd_redis_used_memory_bytes", "The data store's used_memory.", state["used_memory"]
        )
        yield GaugeMetricFamily(
            "devcmd_redis_maxmemory_bytes",
            "The data store's maxmemory (0: no limit); /readyz fails above "
            "REDIS_MEMORY_READY_LIMIT of it.",
            state["maxmemory"],
        )

    def _queues(self) -> Iterator[Metric]:
        """Queue depths and limits; none when the broker is not a Redis devcmd reads."""
        backlog = health.queue_backlog(self.svc)
        if backlog is None:
            return
        depth = GaugeMetricFamily(
            "devcmd_queue_depth", "Messages waiting in a Celery queue.", labels=["queue"]
        )
        limit = GaugeMetricFamily(
            "devcmd_queue_limit", "Depth above which /readyz fails.", labels=["queue"]
        )
        for queue, (waiting, most) in backlog.items():
            depth.add_metric([queue], waiting)
            limit.add_metric([queue], most)
        yield depth
        yield limit


_BACKLOG_HELP = {
    "tasks_active": "Revocation tasks not yet finished.",
    "notifications_due": "Callback notifications waiting for an attempt.",
    "notifications_failed": "Callback notifications given up (devcmd notifications retry).",
    "outboxes_dirty": "Device outboxes that may hold events not yet turned into callbacks.",
    "devices_with_timers": "Devices with an expiry or acknowledgement timer pending.",
}
