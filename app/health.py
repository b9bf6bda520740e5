"""`/healthz` (liveness: this web process answers, nothing else is asked) and `/readyz`
(readiness: Redis, broker, a live worker, queues under their limits; 503 when any check fails)."""

from __future__ import annotations

from flask import Blueprint

from app.apidoc import doc
from app.context import services
from app.schemas.health import LivenessAnswer, ReadinessAnswer
from devcmd.domain import health

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@doc("Liveness: this web process answers (touches nothing else)", answers={200: LivenessAnswer})
def healthz():
    return {"status": "ok", "checks": {"web": {"ok": True}}}


@bp.get("/readyz")
@doc(
    "Readiness: Redis and broker answer, a worker is alive, queues are under their limits",
    answers={200: ReadinessAnswer, 503: ReadinessAnswer},
)
def readyz():
    ready, checks = health.readiness(services())
    return {"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503
