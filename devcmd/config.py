"""Every environment variable devcmd reads, typed and defaulted in one place (README table)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Config:
    """Settings for the web app, the workers and the CLI. Build with `Config.from_env()`."""

    redis_url: str | None = None
    celery_broker_url: str | None = None
    celery_broker_sentinel_master: str | None = "devcmd"
    home: Path = Path(".devcmd")
    embedded_redis_port: int = 6390
    host: str = "127.0.0.1"
    port: int = 8080
    web_workers: int = 2
    web_threads: int = 4
    token_ttl: int = 3600
    refresh_token_ttl: int = 30 * 24 * 3600
    max_pending_per_device: int = 1_000_000
    task_inline_commands: int = 100
    sweep_batch: int = 2000
    sweep_step_seconds: float = 2.0
    stall_seconds: int = 60
    callback_timeout: float = 5.0
    callback_retry_schedule: str = "5,30,120,600,3600,21600"
    callback_breaker_failures: int = 5
    callback_breaker_cooldown: float = 30.0
    callback_lease_seconds: float = 300.0
    callback_allow_private: bool = False
    worker_heartbeat_ttl: int = 15
    ack_timeout: float = 30.0
    expire_zero_grace_ms: int = 1000
    timer_tick_seconds: float = 1.0
    timer_batch: int = 1000
    index_buckets: int = 16
    redis_min_replicas_ack: int = 0
    redis_replica_ack_timeout: float = 1.0
    enos_cancel_limit: int = 10_000
    enos_invoke_wait: float = 10.0
    rate_limit_per_minute: int = 60_000
    login_failures_per_minute: int = 20
    idempotency_ttl: int = 24 * 3600
    idempotency_lease: float = 60.0
    idempotency_wait: float = 2.0
    revocation_queue_limit: int = 10_000
    callback_queue_limit: int = 10_000
    backpressure_reuse_seconds: float = 0.2  # a reading of the queues' depths that found room
    max_content_length: int = 1024 * 1024
    max_paras_bytes: int = 64 * 1024
    max_paras_depth: int = 16
    log_format: str = "json"
    log_level: str = "INFO"
    prometheus_multiproc_dir: str | None = None
    worker_metrics_port: int = 0
    redis_connect_timeout: float = 2.0
    redis_socket_timeout: float = 2.0
    redis_health_check_interval: int = 10
    broker_connect_timeout: float = 2.0
    broker_socket_timeout: float = 5.0
    storage_retry_after: int = 5
    redis_memory_ready_limit: float = 0.9
    worker_stop_timeout: float = 25.0
    command_retention: float = 7 * 24 * 3600.0  # seconds a finished command is kept; 0 = forever
    task_retention: float = (
        7 * 24 * 3600.0
    )  # seconds a finished revocation task is kept; 0 = forever
    notification_retention: float = (
        7 * 24 * 3600.0
    )  # seconds a failed notification stays re-sendable
    retention_interval: float = 60.0  # seconds between beat's retention runs (each per bucket)
    retention_batch: int = 10_000  # most commands (and tasks) one bucket's run removes
    purge_batch: int = 10_000  # most keys one purge run examines per server
    purge_delay: float = 3600.0  # seconds after `apps delete` before its records are purged

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read `DEVCMD_*`-free names (REDIS_URL, PORT, ...) from the environment."""
        env = os.environ if environ is None else environ
        values: dict = {}
        for f in fields(cls):
            name = f.name.upper()
            if f.name == "home":
                name = "DEVCMD_HOME"
            if name not in env:
                continue
            values[f.name] = _parse(f.type, env[name])
        return cls(**values)

    def with_(self, **changes) -> Config:
        """A copy with some settings changed (tests use this, not environment patches)."""
        return replace(self, **changes)

    @property
    def retry_schedule(self) -> list[float]:
        """Seconds before each retry of a callback (then it is marked failed), +-20% jitter."""
        return [float(step) for step in self.callback_retry_schedule.split(",") if step.strip()]

    @property
    def broker_url(self) -> str:
        """CELERY_BROKER_URL, else REDIS_URL (Celery only connects when first used)."""
        return self.celery_broker_url or self.redis_url or "redis://127.0.0.1:6379/0"


def _parse(kind: str, raw: str):
    if kind.startswith("str"):
        return raw or None
    if kind == "Path":
        return Path(raw)
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "bool":
        return raw.strip().lower() in _TRUE
    raise TypeError(kind)
