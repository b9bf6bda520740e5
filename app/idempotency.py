"""`@idempotent`: the Idempotency-Key header on the POSTs that create (devcmd.domain.idempotency
holds the rules). The first successful answer under a key is recorded whole (status, body,
Location) and replayed to every retry with the same request; an error answer changed nothing
and is not recorded, so a retry runs again, with the same id for what it creates."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import current_app, g, request
from flask.wrappers import Response

from app.context import services
from devcmd.domain import idempotency
from devcmd.store.idempotency import Answer

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"


def new_id() -> str | None:
    """The id the request's effect must use under an Idempotency-Key (None: a fresh one)."""
    return g.get("idempotent_id")


def idempotent(action: str | None = None):
    """Honour `Idempotency-Key` on the decorated view (inside authentication: the key belongs
    to the calling application); with `action`, only for that EnOS `?action=`."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args, **kwargs):
            header = request.headers.get(HEADER)
            if header is None or (action and request.args.get("action") != action):
                return view(*args, **kwargs)
            key = idempotency.parse_key(header)
            print_ = idempotency.fingerprint(
                request.method, request.path, request.query_string, request.get_data()
            )
            with idempotency.attempt(services(), g.caller.caller_id, key, print_) as attempt:
                if attempt.replay:
                    return _replay(attempt.replay)
                g.idempotent_id = attempt.seed
                response = current_app.make_response(view(*args, **kwargs))
                if response.status_code < 300:
                    attempt.answer = Answer(
                        response.status_code,
                        response.get_data(),
                        response.headers.get("Location"),
                        response.content_type or "",
                    )
                return response

        wrapper.idempotent = action or True  # the OpenAPI document lists the header from here
        return wrapper

    return decorate


def _replay(answer: Answer) -> Response:
    response = Response(answer.body, answer.status, content_type=answer.content_type or None)
    if answer.location:
        response.headers["Location"] = answer.location
    response.headers[REPLAYED] = "true"
    return response
