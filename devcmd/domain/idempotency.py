"""Idempotency-Key (IETF httpapi draft "The Idempotency-Key HTTP Header Field") for the POSTs
that create: a retried request answers the first answer and creates nothing more.

The key is scoped to the calling application and stored with the request's fingerprint. The
effect cannot be written in the same atomic step as the key's record (the record lives in the
application's hash slot, the effect in its device's, and a Redis Cluster keeps those apart), so
the effect is made idempotent instead: the id it creates (commandId, taskId, deviceId) is fixed
when the key is first claimed and kept with it, and every creating Lua script does nothing when
its id exists already. An attempt that dies between its effect and recording its answer leaves
the key `processing` until its lease (IDEMPOTENCY_LEASE) runs out; the retry after that runs
again with the same id, finds the effect done, and answers it: never a second effect.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

from devcmd import errors
from devcmd.clock import now_ms
from devcmd.domain import ids
from devcmd.services import Services
from devcmd.store.idempotency import Answer

MAX_KEY_LENGTH = 255
# Printable ASCII without surrounding spaces (a header value loses them on the way anyway).
KEY_PATTERN = r"^[!-~]([ -~]{0,253}[!-~])?$"
POLL_SECONDS = 0.05


def parse_key(header: str) -> str:
    """The key of an `Idempotency-Key` header: a Structured Fields string (`"abc"`, as the
    draft says) or, as many clients send it, the bare text. Raises InvalidInput."""
    value = header.strip()
    if not re.match(KEY_PATTERN, value):
        raise errors.InvalidInput(
            "Idempotency-Key", f"must be 1-{MAX_KEY_LENGTH} printable ASCII characters"
        )
    if len(value) >= 3 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def fingerprint(method: str, path: str, query: bytes, body: bytes) -> str:
    """What makes two requests the same request: method, path, query string and body."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query, body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class Attempt:
    """An attempt that owns a key: `seed` is the id its effect must use; `replay` is set
    instead when the key was answered already."""

    def __init__(self, seed: str | None, replay: Answer | None) -> None:
        self.seed = seed
        self.replay = replay
        self.answer: Answer | None = None


@contextmanager
def attempt(svc: Services, app_id: str, key: str, request_fingerprint: str) -> Iterator[Attempt]:
    """Claim `key` of `app_id` for the block. Set `answer` on the attempt to record it (a
    successful answer); otherwise the key is given up for a retry with the same id.

    A request still being served under the key is waited for (up to IDEMPOTENCY_WAIT), then
    IdempotencyKeyInFlight; the key used with another request raises IdempotencyKeyReused.
    """
    config = svc.config
    lease_ms = round(max(config.idempotency_lease, 2 * config.enos_invoke_wait) * 1000)
    owner = ids.new_id()
    deadline = time.monotonic() + config.idempotency_wait
    while True:
        claim = svc.idempotency.claim(
            app_id, key, request_fingerprint, ids.new_id(), owner, now_ms(), lease_ms,
            config.idempotency_ttl,
        )  # fmt: skip
        if claim.mismatch:
            raise errors.IdempotencyKeyReused()
        if claim.answer:
            yield Attempt(None, claim.answer)
            return
        if claim.seed:
            break
        if time.monotonic() >= deadline:
            raise errors.IdempotencyKeyInFlight(retry_after=max(1, min(claim.busy_ms // 1000, 5)))
        time.sleep(POLL_SECONDS)
    current = Attempt(claim.seed, None)
    try:
        yield current
    finally:
        svc.idempotency.settle(app_id, key, owner, config.idempotency_ttl, current.answer)
