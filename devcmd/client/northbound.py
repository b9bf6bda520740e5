"""`Client`: an application's session with devcmd's OceanConnect northbound API.

It logs in on the first call, refreshes the access token shortly before it expires (and once
more if a call still answers `1010005`), and retries what is safe to retry (see
`devcmd.client.transport`). One Client may be shared by threads.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import requests

from devcmd.client import progress as progress_
from devcmd.client.errors import ApiError, TaskTimeout
from devcmd.client.models import (
    Command,
    Device,
    Notification,
    RegisteredDevice,
    RevocationTask,
    Tokens,
    format_time,
)
from devcmd.client.transport import Transport, error_code, error_for

LOGIN = "/iocm/app/sec/v1.1.0/login"
REFRESH = "/iocm/app/sec/v1.1.0/refreshToken"
LOGOUT = "/iocm/app/sec/v1.1.0/logout"
REGISTER = "/iocm/app/reg/v1.1.0/deviceCredentials"
DEVICES = "/iocm/app/dm/v1.4.0/devices"
COMMANDS = "/iocm/app/cmd/v1.4.0/deviceCommands"
TASKS = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"
TOKEN_INVALID = "1010005"  # noqa: S105 (an error code, not a password)
MAX_PAGE = 1000

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a query: its items and the query's total size."""

    page_no: int
    page_size: int
    total_size: int
    items: list[T]


class Client:
    """An application's calls (OceanConnect dialect); every failure raises a DevcmdError.

    `timeout` is the read timeout of one attempt in seconds, `retries` how many times an
    attempt without an answer, a 5xx or a throttled call is repeated; `act_for` makes every
    call act for another application that authorized this one (OceanConnect's `appId` query).
    `pool_size` (connections kept), `throttled_waits` and `sleep`: see `Transport`.
    """

    def __init__(
        self,
        base_url: str,
        app_id: str,
        secret: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        act_for: str | None = None,
        pool_size: int = 10,
        throttled_waits: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.app_id = app_id
        self.act_for = act_for
        self._secret = secret
        self._http = Transport(
            base_url,
            timeout=timeout,
            retries=retries,
            pool_size=pool_size,
            throttled_waits=throttled_waits,
            sleep=sleep,
        )
        self._tokens: Tokens | None = None
        self._lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        """The pooled `requests` session (e.g. to add response hooks for logging)."""
        return self._http.session

    def close(self) -> None:
        """Close the connection pool (the token stays valid until it expires)."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- tokens ------------------------------------------------------------------------------

    def login(self) -> None:
        """Log in now (calls do it when needed). Raises ApiError (e.g. `100208` bad secret)."""
        with self._lock:
            self._login()

    def logout(self) -> None:
        """Revoke the current access token; the next call logs in again."""
        with self._lock:
            tokens, self._tokens = self._tokens, None
        if tokens is not None:
            body = {"accessToken": tokens.access_token}
            self._checked("POST", LOGOUT, json=body, headers={"app_key": self.app_id})

    def _login(self) -> Tokens:
        form = {"appId": self.app_id, "secret": self._secret}
        self._tokens = self._token_answer(self._checked("POST", LOGIN, data=form))
        return self._tokens

    def _refresh(self, stale: Tokens | None) -> Tokens:
        """A fresh token pair unless another thread renewed `stale` already; logs in again if
        the refresh token is refused."""
        if self._tokens is not stale and self._tokens is not None:
            return self._tokens
        if stale is None:
            return self._login()
        body = {"appId": self.app_id, "secret": self._secret, "refreshToken": stale.refresh_token}
        try:
            self._tokens = self._token_answer(self._checked("POST", REFRESH, json=body))
        except ApiError:
            return self._login()
        return self._tokens

    def _current(self) -> Tokens:
        """A token that is not about to expire (renewed within a tenth of its life, <= 60 s)."""
        with self._lock:
            tokens = self._tokens
            if tokens is None or time.monotonic() >= tokens.expires_at:
                return self._refresh(tokens)
            return tokens

    @staticmethod
    def _token_answer(answer: requests.Response) -> Tokens:
        body = answer.json()
        expires_in = int(body["expiresIn"])
        margin = min(60.0, expires_in / 10)
        expires_at = time.monotonic() + expires_in - margin
        return Tokens(body["accessToken"], body["refreshToken"], expires_in, expires_at)

    # --- calls -------------------------------------------------------------------------------

    def _checked(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send without the application's token; raises the answer's error unless 2xx."""
        response = self._http.send(method, path, **kwargs)
        if not response.ok:
            raise error_for(response)
        return response

    def _call(self, method: str, path: str, *, create: bool = False, **kwargs: Any) -> Any:
        """An authenticated call; the decoded answer (None for 204). A creating POST carries
        one Idempotency-Key for all its attempts; a `1010005` renews the token once."""
        headers = {"app_key": self.app_id}
        if create:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        if self.act_for:
            kwargs["params"] = {**(kwargs.get("params") or {}), "appId": self.act_for}
        tokens = self._current()
        for renewed in (False, True):
            headers["Authorization"] = f"Bearer {tokens.access_token}"
            response = self._http.send(method, path, headers=headers, **kwargs)
            if renewed or response.status_code != 401 or error_code(response) != TOKEN_INVALID:
                break
            with self._lock:
                tokens = self._refresh(tokens)
        if not response.ok:
            raise error_for(response)
        return response.json() if response.content else None

    # --- devices -----------------------------------------------------------------------------

    def register_device(
        self,
        node_id: str,
        *,
        verify_code: str | None = None,
        timeout: int | None = None,
        **enos_names: str,
    ) -> RegisteredDevice:
        """Register a device (`productKey`, `deviceKey`, `assetId` may be given by keyword);
        the answer carries its `psk`. Raises ApiError `100416` if the nodeId is taken."""
        body: dict[str, Any] = {"nodeId": node_id, **enos_names}
        if verify_code is not None:
            body["verifyCode"] = verify_code
        if timeout is not None:
            body["timeout"] = timeout
        return RegisteredDevice.from_json(self._call("POST", REGISTER, create=True, json=body))

    def get_device(self, device_id: str) -> Device:
        """One device. Raises ApiError `100418` if this application has no such device."""
        return Device.from_json(self._call("GET", f"{DEVICES}/{device_id}"))

    def delete_device(self, device_id: str) -> None:
        """Delete a device; its undelivered commands end CANCELED. (A retry after a lost answer
        may answer `100418`: the first attempt deleted it.)"""
        self._call("DELETE", f"{DEVICES}/{device_id}")

    # --- commands ----------------------------------------------------------------------------

    def create_command(
        self,
        device_id: str,
        service_id: str,
        method: str,
        paras: dict[str, Any] | None = None,
        *,
        callback_url: str | None = None,
        expire_time: int | None = None,
        max_retransmit: int | None = None,
    ) -> Command:
        """Queue a command (PENDING). Raises ApiError `100418` (no such device) or `100223`
        (the device's pending-command limit)."""
        body: dict[str, Any] = {
            "deviceId": device_id,
            "command": {"serviceId": service_id, "method": method, "paras": paras or {}},
        }
        optional = {
            "callbackUrl": callback_url,
            "expireTime": expire_time,
            "maxRetransmit": max_retransmit,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return Command.from_json(self._call("POST", COMMANDS, create=True, json=body))

    def cancel_command(self, command_id: str) -> Command:
        """Cancel one PENDING command. Raises ApiError `100435` if it already ended another way
        (or was sent; also after a lost answer whose first attempt cancelled it), `100434` if
        there is no such command."""
        body = {"status": "CANCELED"}
        return Command.from_json(self._call("PUT", f"{COMMANDS}/{command_id}", json=body))

    def query_commands(
        self,
        device_id: str | None = None,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        page_no: int = 0,
        page_size: int = MAX_PAGE,
    ) -> Page[Command]:
        """One page of commands, newest first."""
        params = _page_params(page_no, page_size, start_time, end_time, deviceId=device_id)
        answer = self._call("GET", COMMANDS, params=params)
        return _page(answer, Command.from_json)

    def iter_commands(self, device_id: str | None = None, **filters: Any) -> Iterator[Command]:
        """Every command matching the filters of `query_commands` (`page_size` included), page
        after page; commands created meanwhile may shift a page (the order is newest first)."""
        return _pages(lambda no: self.query_commands(device_id, page_no=no, **filters))

    def notifications(self, command_id: str) -> list[Notification]:
        """A command's callbacks and their delivery attempts (devcmd's extension)."""
        answer = self._call("GET", f"{COMMANDS}/{command_id}/notifications")
        return [Notification.from_json(n) for n in answer["notifications"]]

    # --- revocation tasks --------------------------------------------------------------------

    def create_revocation_task(self, device_id: str) -> RevocationTask:
        """Revoke every PENDING command of a device: in effect once this returns (201
        WAITING); the sweep runs in the background (see `wait_for_task`)."""
        answer = self._call("POST", TASKS, create=True, json={"deviceId": device_id})
        return RevocationTask.from_json(answer)

    def query_revocation_tasks(
        self,
        *,
        task_id: str | None = None,
        device_id: str | None = None,
        status: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        page_no: int = 0,
        page_size: int = MAX_PAGE,
    ) -> Page[RevocationTask]:
        """One page of revocation tasks."""
        params = _page_params(
            page_no, page_size, start_time, end_time, taskId=task_id, deviceId=device_id
        )
        if status is not None:
            params["status"] = status
        answer = self._call("GET", TASKS, params=params)
        return _page(answer, RevocationTask.from_json)

    def iter_revocation_tasks(self, **filters: Any) -> Iterator[RevocationTask]:
        """Every revocation task matching the filters of `query_revocation_tasks`."""
        return _pages(lambda no: self.query_revocation_tasks(page_no=no, **filters))

    def get_revocation_task(self, task_id: str) -> RevocationTask:
        """One revocation task. Raises ApiError (HTTP 404) if this application has none such."""
        page = self.query_revocation_tasks(task_id=task_id, page_size=1)
        if not page.items:
            raise ApiError(
                None, f"no task {task_id} among this application's revocation tasks", 404
            )
        return page.items[0]

    def wait_for_task(
        self,
        task_id: str,
        timeout: float | None = None,
        progress: bool | Callable[[RevocationTask], None] = False,
        *,
        interval: float = 0.2,
        max_interval: float = 2.0,
    ) -> RevocationTask:
        """Poll a revocation task until it is SUCCESS, PART_SUCCESS or FAILED and return it.

        Polls after `interval` seconds, then 1.5 times longer each time up to `max_interval`.
        `progress=True` shows a live bar (rich, on stderr); a callable is called with the task
        after every poll (`task.cancelled_count` of `task.total_count`). Raises TaskTimeout
        after `timeout` seconds, or the DevcmdError of a poll.
        """
        report, finish = progress_.reporter(progress)
        started = time.monotonic()
        try:
            while True:
                task = self.get_revocation_task(task_id)
                report(task)
                if task.done:
                    return task
                waited = time.monotonic() - started
                if timeout is not None and waited >= timeout:
                    raise TaskTimeout(task, waited)
                pause = interval if timeout is None else min(interval, timeout - waited)
                time.sleep(max(0.0, pause))
                interval = min(max_interval, interval * 1.5)
        finally:
            finish()


def _page_params(
    page_no: int,
    page_size: int,
    start: datetime | None,
    end: datetime | None,
    **filters: str | None,
) -> dict[str, Any]:
    params: dict[str, Any] = {"pageNo": page_no, "pageSize": page_size}
    params.update({k: v for k, v in filters.items() if v is not None})
    if start is not None:
        params["startTime"] = format_time(start)
    if end is not None:
        params["endTime"] = format_time(end)
    return params


def _page(answer: dict[str, Any], parse: Callable[[dict[str, Any]], T]) -> Page[T]:
    pagination = answer["pagination"]
    return Page(
        pagination["pageNo"],
        pagination["pageSize"],
        pagination["totalSize"],
        [parse(item) for item in answer["data"]],
    )


def _pages(fetch: Callable[[int], Page[T]]) -> Iterator[T]:
    """Items of page 0, 1, ... until the total is covered (or a page comes back empty)."""
    page_no = 0
    while True:
        page = fetch(page_no)
        yield from page.items
        if not page.items or (page_no + 1) * page.page_size >= page.total_size:
            return
        page_no += 1
