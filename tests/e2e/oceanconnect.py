"""A northbound client written from Huawei's public OceanConnect v1.4.0 pages, over `requests`.

Methods return the raw `requests.Response`, so tests assert status codes and bodies themselves.
"""

from __future__ import annotations

import time

import requests

LOGIN = "/iocm/app/sec/v1.1.0/login"
DEVICE_CREDENTIALS = "/iocm/app/reg/v1.1.0/deviceCredentials"
COMMANDS = "/iocm/app/cmd/v1.4.0/deviceCommands"
CANCEL_TASKS = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"
TASK_DONE = {"SUCCESS", "PART_SUCCESS", "FAILED"}


class OceanConnect:
    """One application's session: log in once, then send `app_key` + `Bearer` on every call."""

    def __init__(self, base_url: str, app_id: str, secret: str) -> None:
        self.base_url = base_url
        self.app_id = app_id
        self.secret = secret
        self.http = requests.Session()

    def close(self) -> None:
        self.http.close()

    def login(self) -> requests.Response:
        """Form-encoded login (as the public page shows); keeps the token for later calls."""
        response = self.http.post(
            self.base_url + LOGIN, data={"appId": self.app_id, "secret": self.secret}, timeout=10
        )
        if response.status_code == 200:
            token = response.json()["accessToken"]
            self.http.headers.update({"app_key": self.app_id, "Authorization": f"Bearer {token}"})
        return response

    def register_device(self, node_id: str) -> requests.Response:
        return self._call("POST", DEVICE_CREDENTIALS, json={"nodeId": node_id})

    def create_command(
        self, device_id: str, method: str, paras: dict, callback_url: str | None = None
    ) -> requests.Response:
        body = {
            "deviceId": device_id,
            "command": {"serviceId": "Switch", "method": method, "paras": paras},
            "callbackUrl": callback_url,
        }
        return self._call("POST", COMMANDS, json=body)

    def query_commands(self, device_id: str, page_size: int = 1000) -> requests.Response:
        return self._call("GET", COMMANDS, params={"deviceId": device_id, "pageSize": page_size})

    def cancel_command(self, command_id: str) -> requests.Response:
        return self._call("PUT", f"{COMMANDS}/{command_id}", json={"status": "CANCELED"})

    def create_cancel_task(self, device_id: str) -> requests.Response:
        return self._call("POST", CANCEL_TASKS, json={"deviceId": device_id})

    def query_cancel_task(self, task_id: str) -> requests.Response:
        return self._call("GET", CANCEL_TASKS, params={"taskId": task_id})

    def wait_cancel_task(self, task_id: str, timeout: float = 60.0) -> dict:
        """Poll the task until it is SUCCESS, PART_SUCCESS or FAILED; returns the last record."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.query_cancel_task(task_id)
            assert response.status_code == 200, response.text
            page = response.json()
            assert page["pagination"]["totalSize"] == 1, page
            task = page["data"][0]
            if task["status"] in TASK_DONE:
                return task
            assert time.monotonic() < deadline, f"task still {task['status']}: {task}"
            time.sleep(0.2)

    def _call(self, method: str, path: str, **kwargs: object) -> requests.Response:
        return self.http.request(method, self.base_url + path, timeout=10, **kwargs)
