"""`/healthz`: 200 when this web process, Redis and at least one Celery worker are up."""

from __future__ import annotations

from flask import Blueprint
from redis import RedisError

from app.apidoc import doc
from app.context import services
from app.schemas.health import HealthAnswer
from devcmd.clock import now_ms
from devcmd.store import keys

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@doc("Health of web, Redis and workers", answers={200: HealthAnswer, 503: HealthAnswer})
def healthz():
    svc = services()
    checks = {"web": "ok"}
    try:
        svc.redis.ping()
        checks["redis"] = "ok"
        since = now_ms() - svc.config.worker_heartbeat_ttl * 1000
        workers = svc.redis.zcount(keys.workers(), since, "+inf")
        checks["workers"] = workers
    except RedisError as exc:
        checks["redis"] = f"down: {exc.__class__.__name__}"
        workers = 0
    healthy = checks.get("redis") == "ok" and workers > 0
    return {"status": "ok" if healthy else "degraded", "checks": checks}, 200 if healthy else 503
