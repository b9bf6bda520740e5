"""HTTP for the clients: one pooled `requests` session, retries with backoff, `Retry-After`.

A call is retried when no answer came (connection refused or dropped, timeout), on 5xx, and on
flow control or congestion (`1010009`, `100501`), waiting what `Retry-After` says when the
service said it. Creating POSTs carry an `Idempotency-Key` fixed by the caller for all of a
call's attempts, so a retry after a lost answer cannot create twice.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from devcmd.client.errors import ApiError, Throttled, Unreachable

THROTTLED_CODES = frozenset({"1010009", "100501"})
RETRIED_STATUSES = frozenset({500, 502, 503, 504})
MAX_BACKOFF = 5.0  # seconds: the longest wait between attempts when the service says nothing


def error_code(response: requests.Response) -> str | None:
    """The `error_code` of an OceanConnect error envelope, if the answer is one."""
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("error_code") if isinstance(body, dict) else None
    return str(code) if code else None


def error_for(response: requests.Response) -> ApiError:
    """The exception for an unsuccessful answer, with the envelope's code and text."""
    code = error_code(response)
    try:
        desc = str(response.json().get("error_desc", ""))
    except (ValueError, AttributeError):
        desc = response.text[:300]
    desc = desc or f"HTTP {response.status_code}"
    if code in THROTTLED_CODES:
        return Throttled(code, desc, response.status_code, retry_after(response))
    return ApiError(code, desc, response.status_code)


def retry_after(response: requests.Response) -> float | None:
    """`Retry-After` in seconds (the delta-seconds form devcmd sends), or None."""
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


class Transport:
    """A keep-alive connection pool to one service and the retry policy around it.

    `retries` bounds the attempts after the first; `throttled_waits` (default: `retries`)
    bounds separately how often a throttled answer's `Retry-After` is waited out, e.g. for a
    bulk job that should just go as fast as flow control lets it. `sleep` is how the transport
    waits (`time.sleep`); passing another lets an application (or a test) act while it waits.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        pool_size: int = 10,
        throttled_waits: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = (min(timeout, 3.05), timeout)  # (connect, read) in seconds
        self.retries = retries
        self.throttled_waits = retries if throttled_waits is None else throttled_waits
        self.backoff = backoff
        self.sleep = sleep
        self.session = requests.Session()
        # Our own retries only: urllib3's would resend without asking whether that is safe.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    def send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The last answer to `method path` after the retries (any status).

        Raises Unreachable when no attempt got an answer.
        """
        url = self.base_url + path
        failures = throttled = 0
        while True:
            try:
                response = self.session.request(method, url, timeout=self.timeout, **kwargs)
            except requests.RequestException as exc:
                if failures >= self.retries or not _retryable(exc):
                    raise Unreachable(f"{method} {url}: {exc}") from exc
                self.sleep(self._backoff(failures))
                failures += 1
                continue
            asked = retry_after(response)
            if error_code(response) in THROTTLED_CODES and asked is not None:
                if throttled >= self.throttled_waits:
                    return response
                throttled += 1
                wait = asked
            elif response.status_code in RETRIED_STATUSES:
                if failures >= self.retries:
                    return response
                wait = self._backoff(failures) if asked is None else asked
                failures += 1
            else:
                return response
            response.close()
            self.sleep(wait)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter (so many clients do not retry in step)."""
        return random.uniform(0, min(MAX_BACKOFF, self.backoff * 2**attempt))


def _retryable(exc: requests.RequestException) -> bool:
    """No answer came (retrying is safe: creates carry an Idempotency-Key); not a bad URL."""
    return isinstance(exc, requests.ConnectionError | requests.Timeout)
