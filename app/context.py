"""Request-scoped helpers: the process's services, the application a request acts for, and
the request's id."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial, wraps

from flask import current_app, g, request

from app.flow import check_budget
from devcmd import logs
from devcmd.domain import auth
from devcmd.services import Services
from devcmd.store.reads import Read


def services() -> Services:
    return current_app.extensions["devcmd"]


def app_id() -> str:
    """The effective application, set by `authenticated` (or `acting_for`)."""
    return g.app_id


def request_id() -> str:
    """This request's id: the caller's `X-Request-Id` if acceptable, else a fresh one (set by
    app.observe; EnOS answers carry it as `requestId`, every answer as `X-Request-Id`)."""
    if "request_id" not in g:
        g.request_id = logs.accept_request_id(None)
    return g.request_id


def prefetched():
    """The answer of the read the view's decorator sent along with admission
    (`acting_for`'s `reading`), or None when it was not made or not usable: read anew."""
    return g.caller.prefetched


def acting_for(parameter: str, reading: Callable[..., Read | None] | None = None):
    """Require `app_key` + `Authorization: Bearer`; the query `parameter` may name another
    application that authorized the caller (OceanConnect's `appId`, EnOS's `orgId`). The call
    counts against the caller's budget (`app.flow`), acting for another or not.

    `reading(services, app_id, **view_arguments)` may name the store read the view makes first
    (a `Read`, or None for none): it then goes in admission's round trip (`auth.admit`'s
    `along`), and the view finds its answer in `prefetched()`."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            svc = services()
            along = None
            if reading is not None:
                along = partial(_read_for, reading, svc, kwargs)
            g.caller = auth.admit(
                svc,
                request.headers.get("app_key"),
                request.headers.get("Authorization"),
                request.args.get(parameter),
                along,
            )
            g.app_id = g.caller.app_id
            logs.bind(app_id=g.app_id)
            check_budget(g.caller.budget)
            return view(*args, **kwargs)

        wrapper.acting_for = parameter  # the OpenAPI document reads the scheme from here
        return wrapper

    return decorate


def _read_for(reading: Callable[..., Read | None], svc: Services, kwargs: dict, app: str):
    return reading(svc, app, **kwargs)


authenticated = acting_for("appId")
