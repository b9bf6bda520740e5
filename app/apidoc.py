"""`@doc`: what a route takes, answers and raises, noted beside the route for the OpenAPI
document (app/openapi.py builds it; nothing here changes how a request is served).

    @bp.post("")
    @authenticated
    @doc("Create a command", body=CreateCommandBody, answers={201: DeviceCommandResp},
         raises=(errors.DeviceNotFound, errors.PendingLimitReached))
    def create(): ...

Authentication comes from the route itself: a view wrapped by `acting_for` is documented with
the `app_key` + `Authorization: Bearer` scheme and its errors; `security="device"` names the
device API's HTTP Basic. Input errors (`InvalidInput`) are added for any body or query schema.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from marshmallow import Schema

from devcmd.errors import DomainError

# An answer: a marshmallow schema (JSON), None (no body) or a media type (e.g. "text/html").
Answer = type[Schema] | Schema | str | None


@dataclass(frozen=True)
class RouteDoc:
    """The documentation of one route (or, for EnOS, of one `action`)."""

    summary: str
    answers: Mapping[int, Answer] = field(default_factory=dict)  # status -> answer
    body: type[Schema] | None = None
    body_types: tuple[str, ...] = ("application/json",)
    query: type[Schema] | None = None
    raises: tuple[type[DomainError], ...] = ()
    security: str | None = None
    # EnOS: the query parameter that picks the action, and the table of actions
    # (name -> (view, methods)); each action's view carries its own RouteDoc.
    dispatch: tuple[str, Mapping[str, tuple[Callable, tuple[str, ...]]]] | None = None


def doc(summary: str, **kwargs) -> Callable:
    """Note `RouteDoc(summary, **kwargs)` on the view (as `view.openapi`) and return it as is."""
    note = RouteDoc(summary, **kwargs)

    def decorate(view: Callable) -> Callable:
        view.openapi = note
        return view

    return decorate
