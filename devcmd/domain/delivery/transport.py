"""HTTP for one worker process: an asyncio event loop in a thread of its own, with one aiohttp
session (keep-alive connections reused across delivery tasks). A delivery task hands it a
coroutine and waits; inside, every command's notifications are one coroutine, so hundreds of
POSTs are in flight at once without a thread each."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from functools import lru_cache
from typing import Any, TypeVar

import aiohttp

T = TypeVar("T")
CONNECT_TIMEOUT = 3.0  # seconds at most to connect, whatever CALLBACK_TIMEOUT says
CONCURRENCY = 64  # POSTs in flight per worker process


@lru_cache(maxsize=16)
def _timeouts(timeout: float) -> aiohttp.ClientTimeout:
    """The limits of one POST for a CALLBACK_TIMEOUT (the same object for every POST)."""
    return aiohttp.ClientTimeout(
        total=None, connect=min(timeout, CONNECT_TIMEOUT), sock_read=timeout
    )


class TransportError(Exception):
    """No HTTP answer: refused, reset, timed out, or an invalid answer."""


class Sender:
    """Concurrent POSTs: at most `concurrency` in flight (and as many open connections)."""

    def __init__(self, concurrency: int = CONCURRENCY) -> None:
        self.concurrency = concurrency
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="callback-sender", daemon=True
        )
        self._thread.start()
        self._session: aiohttp.ClientSession | None = None

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the sender's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    async def post(self, url: str, payload: str, headers: dict[str, str], timeout: float) -> int:
        """POST and return the status; redirects are not followed. Raises TransportError."""
        session = self._session or self._open()
        limits = _timeouts(timeout)
        try:
            async with session.post(
                url, data=payload.encode(), headers=headers, timeout=limits, allow_redirects=False
            ) as response:
                return response.status
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}"[:300]) from exc

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self.concurrency, ttl_dns_cache=60)
        self._session = aiohttp.ClientSession(
            connector=connector,
            skip_auto_headers=["Accept"],
            # Receivers' cookies are never sent back, and answers are never read: no cookie
            # jar to filter and no decompressor to set up on every POST.
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )
        return self._session

    def close(self) -> None:
        """Close the connections and stop the loop's thread."""
        if self._session is not None:
            self.run(self._session.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()
