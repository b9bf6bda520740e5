"""Applications, login/refresh/logout, and resolving which application a request acts for."""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from werkzeug.security import check_password_hash, generate_password_hash

from devcmd import errors
from devcmd.clock import now_ms
from devcmd.domain import devices, ids
from devcmd.services import Services
from devcmd.store.auth import Admission
from devcmd.store.reads import Read

BEARER = "bearer"
WINDOW_MS = 60_000
ADMIT_ATTEMPTS = 3  # a token is looked up again after a revocation bumped its app's version


@dataclass(frozen=True)
class Budget:
    """The caller's flow-control budget after a call: its calls per minute (0 = unlimited),
    calls left in the sliding minute, when the current minute ends (epoch seconds), and, for a
    refused call, how many seconds to wait."""

    limit: int
    remaining: int
    reset: int
    retry_after: int | None = None

    @property
    def exhausted(self) -> bool:
        return self.retry_after is not None


@dataclass(frozen=True)
class Caller:
    """An authenticated request: the application it acts for (`app_id`), the one whose
    credentials made it (`caller_id`), the caller's budget after counting it, and the answer
    of the read sent along with its admission (`admit`'s `along`; None if none was made)."""

    app_id: str
    caller_id: str
    budget: Budget
    prefetched: Any = None


def create_application(
    svc: Services, app_id: str | None = None, secret: str | None = None, name: str | None = None
) -> dict[str, str]:
    """Create an application; returns its appId, secret and webhookSecret (shown once).

    Raises InvalidInput for a malformed appId and AppExists if it is taken.
    """
    app_id = app_id or ids.new_id()
    if not ids.is_valid(app_id):
        raise errors.InvalidInput("appId", "1-64 characters of A-Z a-z 0-9 _ . -")
    secret = secret or ids.new_secret()
    webhook_secret = ids.new_webhook_secret()
    record = {
        "appId": app_id,
        "name": name or app_id,
        "secretHash": generate_password_hash(secret),
        "webhookSecret": webhook_secret,
        "frozen": "0",
        "createTime": str(now_ms()),
    }
    if not svc.apps.create(app_id, record):
        raise errors.AppExists()
    return {"appId": app_id, "secret": secret, "webhookSecret": webhook_secret}


def list_applications(svc: Services) -> list[dict[str, str]]:
    """Every application, without its secrets."""
    found = (svc.apps.get(app_id) for app_id in svc.apps.all_ids())
    return [
        {"appId": a["appId"], "name": a["name"], "frozen": a["frozen"] == "1"} for a in found if a
    ]


def rotate_webhook_secret(svc: Services, app_id: str, grace_seconds: int) -> dict[str, str]:
    """Give the application a new webhookSecret; the old one keeps signing alongside it (a
    second signature in `webhook-signature`) for `grace_seconds`. Raises AppNotFound."""
    app = svc.apps.get(app_id)
    if not app:
        raise errors.AppNotFound()
    secret = ids.new_webhook_secret()
    svc.apps.update(
        app_id,
        {
            "webhookSecret": secret,
            "previousWebhookSecret": app["webhookSecret"],
            "previousUntil": str(now_ms() + grace_seconds * 1000),
        },
    )
    return {"appId": app_id, "webhookSecret": secret}


def delete_application(svc: Services, app_id: str, force: bool = False) -> dict:
    """Delete an application: its tokens stop working at once, its grants (given and received)
    go, and its appId can never be used again (its records stay, unreachable).

    With live devices it refuses (AppHasDevices) unless `force`; then each device is deleted as
    `DELETE .../devices/{id}` does, so its undelivered commands end CANCELED through a
    revocation sweep, with signed callbacks. Raises AppNotFound.
    """
    if not svc.apps.get(app_id):
        raise errors.AppNotFound(f"The application {app_id} does not exist.")
    live = svc.devices.ids(app_id)
    if live and not force:
        raise errors.AppHasDevices(len(live))
    svc.apps.tombstone(app_id, now_ms())
    revoked = svc.tokens.revoke_all(app_id)
    svc.apps.drop_grants(app_id)
    # Listed again after the tombstone: catches a device registered by a request in flight.
    device_ids = svc.devices.ids(app_id)
    for device_id in device_ids:
        devices.delete(svc, app_id, device_id)
    return {"appId": app_id, "deletedDevices": len(device_ids), "revokedTokens": revoked}


def set_rate_limit(svc: Services, app_id: str, per_minute: int | None) -> dict:
    """Give the application its own northbound calls per minute (None: back to the default,
    RATE_LIMIT_PER_MINUTE, where 0 means unlimited). Every web process reads it on the next
    call. Raises AppNotFound."""
    if not svc.apps.get(app_id):
        raise errors.AppNotFound()
    svc.apps.set_rate_limit(app_id, per_minute)
    effective = per_minute or svc.config.rate_limit_per_minute
    return {"appId": app_id, "perMinute": effective, "default": per_minute is None}


def webhook_secrets(app: dict[str, str]) -> list[str]:
    """The secrets that sign an application's callbacks now: current first, then one in grace."""
    secrets_ = [app["webhookSecret"]]
    if app.get("previousWebhookSecret") and int(app.get("previousUntil") or 0) > now_ms():
        secrets_.append(app["previousWebhookSecret"])
    return secrets_


def authorize(svc: Services, owner: str, grantee: str) -> None:
    """Let `grantee` act for `owner` through the `appId` query parameter."""
    for app_id in (owner, grantee):
        if not svc.apps.get(app_id):
            raise errors.AppNotFound(f"The application {app_id} does not exist.")
    svc.apps.grant(owner, grantee)


def _check_secret(svc: Services, app_id: str, secret: str) -> None:
    app = svc.apps.get(app_id)
    if not app or not check_password_hash(app["secretHash"], secret):
        raise errors.BadCredentials()
    if app.get("frozen") == "1":
        raise errors.AppFrozen()


def _issue(svc: Services, app_id: str) -> dict:
    access, refresh_ = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    config = svc.config
    svc.tokens.issue(app_id, (access, config.token_ttl), (refresh_, config.refresh_token_ttl))
    return {
        "accessToken": access,
        "tokenType": BEARER,
        "expiresIn": svc.config.token_ttl,
        "refreshToken": refresh_,
        "scope": "default",
    }


def login(svc: Services, app_id: str | None, secret: str | None) -> dict:
    """Exchange appId + secret for tokens.

    Raises MissingLoginParameter, BadCredentials or AppFrozen.
    """
    if not app_id or not secret:
        raise errors.MissingLoginParameter("appId and secret are required.")
    _check_secret(svc, app_id, secret)
    return _issue(svc, app_id)


def refresh(svc: Services, app_id: str, secret: str, refresh_token: str) -> dict:
    """Rotate tokens: the refresh token works once. Raises BadCredentials or TokenInvalid."""
    _check_secret(svc, app_id, secret)
    if not svc.tokens.take_refresh(refresh_token, app_id):
        raise errors.TokenInvalid("The refresh token is invalid or expired.")
    return _issue(svc, app_id)


def logout(svc: Services, access_token: str, app_key: str | None = None) -> None:
    """Revoke an access token. With an `app_key` header the token must be that application's
    (another application's stays live); without one, holding the token is enough, as in
    OceanConnect. Raises TokenInvalid if nothing was revoked."""
    if not svc.tokens.drop_access(access_token, app_key or None):
        raise errors.TokenInvalid()


def admit(
    svc: Services,
    app_key: str | None,
    authorization: str | None,
    acting_for: str | None,
    along: Callable[[str], Read | None] | None = None,
) -> Caller:
    """Authenticate a northbound call and count it against the caller's budget.

    Who makes it comes from its headers, which application it acts for from the optional `appId`
    (or `orgId`) query. One round trip in the steady state: the token's owner is cached per
    process (`TokenStore.cached_owner`), and one script checks the caller's record (live, not
    frozen, same authVersion as when the token was checked, so a logout or deletion takes
    effect at once) and counts the call. A call over the budget is not counted and comes back
    with `budget.exhausted`. Raises AppKeyMissing, TokenInvalid, AppNotFound, AppFrozen or
    NotAuthorized.

    `along(app_id)` may give the read the call will make for its own application: on one
    server it goes in the admission's round trip and its answer comes back as
    `Caller.prefetched`, only for an admitted call acting for its own application (for any
    other the read, side-effect free, is thrown away unseen).
    """
    if not app_key:
        raise errors.AppKeyMissing()
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != BEARER or not token:
        raise errors.TokenInvalid()
    own = not acting_for or acting_for == app_key
    read = along(app_key) if along is not None and own else None
    admission, prefetched = _admission(svc, app_key, token, read)
    if admission.code == Admission.NO_APP:
        raise errors.TokenInvalid()
    if admission.code == Admission.FROZEN:
        raise errors.AppFrozen()
    budget = _budget(admission)
    if own:
        return Caller(app_key, app_key, budget, None if budget.exhausted else prefetched)
    if not ids.is_valid(acting_for) or not svc.apps.get(acting_for):
        raise errors.AppNotFound()
    if not svc.apps.is_granted(acting_for, app_key):
        raise errors.NotAuthorized()
    return Caller(acting_for, app_key, budget)


def _admission(svc: Services, app_key: str, token: str, read: Read | None) -> tuple[Admission, Any]:
    """Run the admission script (with `read`, when given) against the cached check of `token`,
    looking the token up again (one more round trip) when uncached or when a revocation changed
    the version."""
    checked = svc.tokens.cached_owner(token)
    for _ in range(ADMIT_ATTEMPTS):
        if checked is None or checked.app_id != app_key:
            checked = svc.tokens.look_up(token, app_key)
            if checked is None:
                raise errors.TokenInvalid()
        now, limit = now_ms(), svc.config.rate_limit_per_minute
        if read is None:
            admission, found = svc.apps.admit(app_key, now, limit, checked.version), None
        else:
            admission, found = svc.apps.admit_reading(app_key, now, limit, checked.version, read)
        if admission.code != Admission.STALE:
            return admission, found
        svc.tokens.forget(token)
        checked = None
    raise errors.TokenInvalid()  # revocations kept racing this call: let the client retry


def _budget(admission: Admission) -> Budget:
    """Headers' view of an admission: calls left, the minute's end, and a refusal's wait."""
    if admission.limit <= 0:
        return Budget(0, 0, 0)
    now_s = (now_ms() - admission.into_ms + WINDOW_MS) / 1000
    reset = math.ceil(now_s)
    if admission.code == Admission.OVER_BUDGET:
        # By the end of this minute the previous minute's calls have left the window; if this
        # minute's alone fill the budget, the call after the wait is refused with a new one.
        wait = max(1, math.ceil((WINDOW_MS - admission.into_ms) / 1000))
        return Budget(admission.limit, 0, reset, wait)
    remaining = max(0, (admission.limit * 1000 - admission.weighted_milli) // 1000)
    return Budget(admission.limit, remaining, reset)
