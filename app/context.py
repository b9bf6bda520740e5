"""Request-scoped helpers: the process's services, the application a request acts for, and
the request's id."""

from __future__ import annotations

from functools import wraps

from flask import current_app, g, request

from app.flow import check_budget
from devcmd import logs
from devcmd.domain import auth
from devcmd.services import Services


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


def acting_for(parameter: str):
    """Require `app_key` + `Authorization: Bearer`; the query `parameter` may name another
    application that authorized the caller (OceanConnect's `appId`, EnOS's `orgId`). The call
    counts against the caller's budget (`app.flow`), acting for another or not."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            g.caller = auth.admit(
                services(),
                request.headers.get("app_key"),
                request.headers.get("Authorization"),
                request.args.get(parameter),
            )
            g.app_id = g.caller.app_id
            logs.bind(app_id=g.app_id)
            check_budget(g.caller.budget)
            return view(*args, **kwargs)

        wrapper.acting_for = parameter  # the OpenAPI document reads the scheme from here
        return wrapper

    return decorate


authenticated = acting_for("appId")
