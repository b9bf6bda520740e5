"""Request-scoped helpers: the process's services and the application a request acts for."""

from __future__ import annotations

from functools import wraps

from flask import current_app, g, request

from devcmd.domain import auth
from devcmd.services import Services


def services() -> Services:
    return current_app.extensions["devcmd"]


def app_id() -> str:
    """The effective application, set by `authenticated`."""
    return g.app_id


def authenticated(view):
    """Require `app_key` + `Authorization: Bearer`; honour an authorized `appId` query parameter."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        g.app_id = auth.authenticate(
            services(),
            request.headers.get("app_key"),
            request.headers.get("Authorization"),
            request.args.get("appId"),
        )
        return view(*args, **kwargs)

    return wrapper
