"""devcmd's callback receiver kit: verify a delivery's Standard Webhooks signature, parse it
into an `Event`, drop duplicates by `webhook-id`, call your handler, answer devcmd.

    from devcmd.receiver import wsgi_app

    def handle(event):                      # runs once per webhook-id that it accepts
        print(event.command_id, event.status, event.result_detail)

    app = wsgi_app(handle, secrets=["whsec_..."])   # any WSGI server; or blueprint(...) in Flask

The answer tells devcmd what happened: 2xx once the handler returned (done), 400 for a bad
signature or body (a forgery stays refused however often it comes), 5xx when the handler raised
(devcmd retries with backoff, same `webhook-id`). A handler may raise `Respond(status)` to
choose, e.g. `Respond(410)` to stop further attempts of that notification. Needs only
`standardwebhooks`; Flask is imported by `blueprint()` alone: `pip install 'devcmd[receiver]'`.
"""

from __future__ import annotations

import binascii
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

if TYPE_CHECKING:
    from flask import Blueprint

log = logging.getLogger(__name__)

MAX_TOLERANCE = 300  # seconds: the standardwebhooks package refuses older timestamps itself
MAX_BODY = 1 << 20  # bytes: devcmd's callback bodies are far smaller


class InvalidDelivery(Exception):
    """Not a delivery we can trust or read: bad or missing signature, stale timestamp, bad body."""


class Respond(Exception):
    """Raised by a handler to answer with `status` (e.g. 410: stop; 503: retry later)."""

    def __init__(self, status: int, text: str = "") -> None:
        super().__init__(f"{status} {text}".strip())
        self.status = status
        self.text = text


@dataclass(frozen=True)
class Event:
    """One command status change as devcmd called it back."""

    webhook_id: str  # stable across retries of this notification: the key to deduplicate by
    timestamp: datetime  # when this attempt was signed (UTC)
    device_id: str
    command_id: str
    status: str  # the command's new status (resultCode): SENT, DELIVERED, SUCCESSFUL, ...
    result_detail: Any  # what the device reported with its result, else None
    body: dict[str, Any] = field(repr=False)
    raw: bytes = field(repr=False)
    headers: dict[str, str] = field(repr=False)  # lower-case names


def parse(body: bytes, headers: Mapping[str, str]) -> Event:
    """The event in a delivery, without checking its signature (see `Verifier`).

    Raises InvalidDelivery if the body or the webhook headers are not devcmd's.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        data = json.loads(body)
        result = data["result"]
        return Event(
            webhook_id=lowered["webhook-id"],
            timestamp=datetime.fromtimestamp(int(lowered["webhook-timestamp"]), UTC),
            device_id=str(data["deviceId"]),
            command_id=str(data["commandId"]),
            status=str(result["resultCode"]),
            result_detail=result.get("resultDetail"),
            body=data,
            raw=body,
            headers=lowered,
        )
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
        raise InvalidDelivery(f"not a devcmd callback: {exc!r}") from exc


class Verifier:
    """Checks signatures against one or more secrets (several during a rotation: devcmd signs
    with the new and the old secret during the grace period) and the timestamp's age.

    `tolerance` (seconds, at most 300) bounds how far `webhook-timestamp` may be from now, so
    a captured delivery cannot be replayed later.
    """

    def __init__(self, secrets: str | Sequence[str], *, tolerance: float = MAX_TOLERANCE) -> None:
        keys = [secrets] if isinstance(secrets, str) else list(secrets)
        if not keys:
            raise ValueError("at least one webhook secret is needed")
        if not 0 < tolerance <= MAX_TOLERANCE:
            raise ValueError(f"tolerance must be in (0, {MAX_TOLERANCE}] seconds")
        self._webhooks = [Webhook(key) for key in keys]
        self.tolerance = tolerance

    def __call__(self, body: bytes, headers: Mapping[str, str]) -> Event:
        """The event, if one of the secrets signed it recently. Raises InvalidDelivery."""
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            age = abs(time.time() - int(lowered.get("webhook-timestamp", "")))
        except ValueError:
            raise InvalidDelivery("missing or malformed webhook-timestamp") from None
        if age > self.tolerance:
            raise InvalidDelivery(f"webhook-timestamp is {age:.0f} s away from now")
        if not any(self._signed_by(webhook, body, lowered) for webhook in self._webhooks):
            raise InvalidDelivery("no valid signature for our secrets")
        return parse(body, lowered)

    @staticmethod
    def _signed_by(webhook: Webhook, body: bytes, headers: dict[str, str]) -> bool:
        try:
            webhook.verify(body, headers, json_parse=False)
        except (WebhookVerificationError, ValueError, binascii.Error):
            return False
        return True


class Dedup(Protocol):
    """Remembers accepted `webhook-id`s: `claim` is True for an id not seen (and takes it),
    `release` forgets an id whose handler failed, so devcmd's retry is handled again."""

    def claim(self, webhook_id: str) -> bool: ...

    def release(self, webhook_id: str) -> None: ...


class MemoryDedup:
    """The last `size` webhook-ids in this process (an LRU): for a single-process receiver."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, webhook_id: str) -> bool:
        with self._lock:
            if webhook_id in self._seen:
                self._seen.move_to_end(webhook_id)
                return False
            self._seen[webhook_id] = None
            if len(self._seen) > self.size:
                self._seen.popitem(last=False)
            return True

    def release(self, webhook_id: str) -> None:
        with self._lock:
            self._seen.pop(webhook_id, None)


class RedisDedup:
    """Webhook-ids in Redis (`SET NX` with a TTL): for receivers with several processes.

    `client` is a redis-py client (or anything with its `set` and `delete`); keep `ttl` longer
    than devcmd's whole retry schedule.
    """

    def __init__(self, client: Any, *, ttl: int = 7 * 24 * 3600, prefix: str = "webhook:") -> None:
        self.client = client
        self.ttl = ttl
        self.prefix = prefix

    def claim(self, webhook_id: str) -> bool:
        return bool(self.client.set(self.prefix + webhook_id, 1, nx=True, ex=self.ttl))

    def release(self, webhook_id: str) -> None:
        self.client.delete(self.prefix + webhook_id)


Handler = Callable[[Event], object]
Verify = Callable[[bytes, Mapping[str, str]], Event]  # a Verifier, or `parse` to check nothing
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Receiver:
    """Verify, deduplicate, handle: `receive(body, headers)` is (HTTP status, text) to answer.

    Give `secrets`, or a `verifier` (a callable `(body, headers) -> Event` raising
    InvalidDelivery; `parse` checks no signature, for tests that check signatures themselves);
    `dedup=None` hands every delivery to the handler.
    """

    def __init__(
        self,
        handler: Handler,
        secrets: str | Sequence[str] | None = None,
        *,
        tolerance: float = MAX_TOLERANCE,
        verifier: Verify | None = None,
        dedup: Dedup | None = None,
    ) -> None:
        if (secrets is None) == (verifier is None):
            raise ValueError("give either secrets or a verifier")
        self.handler = handler
        self.verifier = verifier or Verifier(secrets or [], tolerance=tolerance)
        self.dedup = dedup

    def receive(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
        """Run one delivery through; never raises (a handler's error answers 500)."""
        try:
            event = self.verifier(body, headers)
        except InvalidDelivery as exc:
            log.warning("refused a callback: %s", exc)
            return 400, str(exc)
        if self.dedup is not None and not self.dedup.claim(event.webhook_id):
            return 200, "duplicate"
        try:
            self.handler(event)
        except Respond as answer:
            if answer.status >= 300:
                self._release(event)
            return answer.status, answer.text
        except Exception:
            log.exception("callback handler failed for %s", event.webhook_id)
            self._release(event)
            return 500, "handler failed"
        return 200, "ok"

    def _release(self, event: Event) -> None:
        if self.dedup is not None:
            self.dedup.release(event.webhook_id)


def _receiver(handler: Handler, secrets: Any, options: dict[str, Any]) -> Receiver:
    if "dedup" not in options:
        options["dedup"] = MemoryDedup()
    return Receiver(handler, secrets, **options)


def wsgi_app(
    handler: Handler, secrets: str | Sequence[str] | None = None, **options: Any
) -> WSGIApp:
    """A WSGI application receiving devcmd callbacks by POST on any path. `options` are those
    of `Receiver` (tolerance, verifier, dedup: an in-process MemoryDedup unless given)."""
    receiver = _receiver(handler, secrets, options)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] != "POST":
            status, text = 405, "POST only"
        else:
            status, text = receiver.receive(_body(environ), _headers(environ))
        payload = text.encode()
        start_response(
            _status_line(status),
            [("Content-Type", "text/plain"), ("Content-Length", str(len(payload)))],
        )
        return [payload]

    return app


def blueprint(
    handler: Handler,
    secrets: str | Sequence[str] | None = None,
    *,
    name: str = "devcmd_callbacks",
    url_prefix: str | None = None,
    rule: str | None = None,
    **options: Any,
) -> Blueprint:
    """A Flask blueprint receiving devcmd callbacks by POST on `url_prefix` + `rule` (by default
    exactly `url_prefix`, or `/`: devcmd follows no redirect); `options` as for `wsgi_app`.
    Imports Flask (only this function does)."""
    from flask import Blueprint, request

    receiver = _receiver(handler, secrets, options)
    bp = Blueprint(name, __name__, url_prefix=url_prefix)

    @bp.post(rule if rule is not None else ("" if url_prefix else "/"))
    def callback() -> tuple[str, int, dict[str, str]]:
        status, text = receiver.receive(request.get_data(), request.headers)
        return text, status, {"Content-Type": "text/plain"}

    return bp


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Status"


def _body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(min(length, MAX_BODY)) if length > 0 else b""


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    """Request headers by lower-case name (`webhook-id`, `content-type`...) from the environ."""
    headers = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):  # WSGI keeps these two without HTTP_
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers


class ThreadingServer(ThreadingMixIn, WSGIServer):
    """The standard library's WSGI server, one thread per connection: enough for a demo, tests
    or a small receiver (`serve_forever()`, `shutdown()`, `server_close()`)."""

    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops bursts of concurrent connects

    def __init__(self, app: WSGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _QuietHandler)
        self.set_app(app)

    def url(self, path: str = "/") -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}{path}"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No line per request on stderr (the handler logs what matters)."""


@contextmanager
def serving(app: WSGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[ThreadingServer]:
    """`app` served on `host:port` (0: a free port) by a background thread for the block."""
    server = ThreadingServer(app, host, port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
