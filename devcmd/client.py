"""A small northbound client over `requests` for the CLI's `tasks watch` and `demo`: the calls
an application makes (OceanConnect dialect) and the three a device makes. Every answer other
than success raises ApiError with the status and the envelope's error code."""

from __future__ import annotations

from typing import Any

import requests

LOGIN = "/iocm/app/sec/v1.1.0/login"
DEVICE_CREDENTIALS = "/iocm/app/reg/v1.1.0/deviceCredentials"
COMMANDS = "/iocm/app/cmd/v1.4.0/deviceCommands"
CANCEL_TASKS = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"
DEVICE_COMMANDS = "/southbound/v1/devices/{device_id}/commands"
TASK_DONE = frozenset({"SUCCESS", "PART_SUCCESS", "FAILED"})
TIMEOUT = (3.0, 10.0)  # connect, read (seconds)


class ApiError(Exception):
    """A call that did not succeed: HTTP status, error code (if any) and the body."""

    def __init__(self, status: int, code: str | None, body: str) -> None:
        super().__init__(f"HTTP {status} {code or ''}: {body[:300]}".replace("  ", " "))
        self.status = status
        self.code = code


class Unreachable(Exception):
    """No answer from the service at all (connection refused, timeout)."""


class Northbound:
    """One application's session: `login()` once, then every call carries app_key + Bearer."""

    def __init__(self, base_url: str, app_id: str, secret: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self.secret = secret
        self.http = requests.Session()

    def close(self) -> None:
        self.http.close()

    def login(self) -> None:
        form = {"appId": self.app_id, "secret": self.secret}
        tokens = self._call("POST", LOGIN, data=form, signed=False)
        self.http.headers.update(
            {"app_key": self.app_id, "Authorization": f"Bearer {tokens['accessToken']}"}
        )

    def register_device(self, node_id: str) -> dict:
        """{deviceId, psk, ...} of a newly registered device."""
        return self._call("POST", DEVICE_CREDENTIALS, json={"nodeId": node_id})

    def create_command(
        self, device_id: str, service_id: str, method: str, paras: dict, callback_url: str | None
    ) -> dict:
        body: dict[str, Any] = {
            "deviceId": device_id,
            "command": {"serviceId": service_id, "method": method, "paras": paras},
        }
        if callback_url:
            body["callbackUrl"] = callback_url
        return self._call("POST", COMMANDS, json=body)

    def cancel_command(self, command_id: str) -> dict:
        return self._call("PUT", f"{COMMANDS}/{command_id}", json={"status": "CANCELED"})

    def create_task(self, device_id: str) -> dict:
        return self._call("POST", CANCEL_TASKS, json={"deviceId": device_id})

    def task(self, task_id: str) -> dict:
        """The task's record. Raises ApiError(404) if this application has no such task."""
        page = self._call("GET", CANCEL_TASKS, params={"taskId": task_id})
        if not page["data"]:
            raise ApiError(404, "100434", f"no task {task_id}")
        return page["data"][0]

    def notifications(self, command_id: str) -> list[dict]:
        return self._call("GET", f"{COMMANDS}/{command_id}/notifications")["notifications"]

    # --- the device side (HTTP Basic deviceId:psk) -------------------------------------------

    def device_fetch(self, device_id: str, psk: str, limit: int) -> list[dict]:
        path = DEVICE_COMMANDS.format(device_id=device_id)
        answer = self._call("GET", path, params={"max": limit}, auth=(device_id, psk), signed=False)
        return answer["commands"]

    def device_result(self, device_id: str, psk: str, command_id: str, code: str) -> None:
        path = DEVICE_COMMANDS.format(device_id=device_id) + f"/{command_id}"
        auth = (device_id, psk)
        self._call("POST", path + "/ack", auth=auth, signed=False)
        body = {"resultCode": code, "resultDetail": {"by": "devcmd demo"}}
        self._call("POST", path + "/result", json=body, auth=auth, signed=False)

    def _call(self, method: str, path: str, signed: bool = True, **kwargs: Any) -> Any:
        """The decoded JSON answer (None for 204). `signed=False` leaves out the app headers."""
        send = self.http.request if signed else requests.request
        try:
            response = send(method, self.base_url + path, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise Unreachable(f"{self.base_url}: {exc}") from exc
        if not response.ok:
            raise ApiError(response.status_code, _error_code(response), response.text)
        return response.json() if response.content else None


def _error_code(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or not body.get("error_code"):
        return None
    return str(body["error_code"])
