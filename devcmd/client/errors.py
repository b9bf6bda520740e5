"""The client's one exception family: every failure is a DevcmdError carrying the service's
`error_code` and `error_desc` (None for failures that never got an answer)."""

from __future__ import annotations


class DevcmdError(Exception):
    """A call that did not succeed. `http_status` is None when no answer arrived at all."""

    def __init__(
        self, error_code: str | None, error_desc: str, http_status: int | None = None
    ) -> None:
        super().__init__(f"{error_code or http_status or 'error'}: {error_desc}")
        self.error_code = error_code
        self.error_desc = error_desc
        self.http_status = http_status


class ApiError(DevcmdError):
    """The service answered with an error envelope (or an unexpected status)."""


class Throttled(ApiError):
    """Flow control (`1010009`) or congestion (`100501`) outlasted the client's retries;
    `retry_after` is the wait in seconds the service asked for, if it said."""

    def __init__(
        self, error_code: str | None, error_desc: str, http_status: int, retry_after: float | None
    ) -> None:
        super().__init__(error_code, error_desc, http_status)
        self.retry_after = retry_after


class Unreachable(DevcmdError):
    """No answer: connection refused or dropped, or a timeout, after every retry."""

    def __init__(self, error_desc: str) -> None:
        super().__init__(None, error_desc)


class TaskTimeout(DevcmdError):
    """`wait_for_task` ran out of time; `task` is the last record seen."""

    def __init__(self, task: object, waited: float) -> None:
        super().__init__(None, f"task still {getattr(task, 'status', '?')} after {waited:.1f} s")
        self.task = task
