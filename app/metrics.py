"""`/metrics`: Prometheus text exposition of this machine's web and worker processes and the
service gauges read from Redis at scrape time (see devcmd.metrics)."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.apidoc import doc
from app.context import services
from devcmd.scrape import exposition

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@doc("Prometheus metrics (text exposition format)", answers={200: "text/plain"})
def scrape() -> Response:
    return Response(exposition(services()), content_type=CONTENT_TYPE_LATEST)
