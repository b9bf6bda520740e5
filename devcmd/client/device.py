"""`DeviceClient`: what a device does with devcmd's device API (HTTP Basic `deviceId:psk`)."""

from __future__ import annotations

from typing import Any

import requests

from devcmd.client.models import DeviceCommand
from devcmd.client.transport import Transport, error_for

DEVICE_COMMANDS = "/southbound/v1/devices/{device_id}/commands"
RESULT_CODES = ("SUCCESSFUL", "FAILED")


class DeviceClient:
    """One device's calls; every failure raises a DevcmdError (`http_status` 404 or 409 when
    the command is no longer the device's to touch, 401 when its credentials are refused).

    `fetch` is not idempotent (each command taken becomes SENT), so by default nothing is
    retried: a command whose answer was lost is sent again after the ack timeout anyway.
    Devices of one process may share one `Transport` (one connection pool) via `transport`.
    """

    def __init__(
        self,
        base_url: str,
        device_id: str,
        psk: str,
        *,
        timeout: float = 10.0,
        retries: int = 0,
        transport: Transport | None = None,
    ) -> None:
        self.device_id = device_id
        self._auth = (device_id, psk)
        self._path = DEVICE_COMMANDS.format(device_id=device_id)
        self._http = transport or Transport(base_url, timeout=timeout, retries=retries)
        self._own_transport = transport is None

    def close(self) -> None:
        """Close the connection pool, unless it was given (and is shared)."""
        if self._own_transport:
            self._http.close()

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def fetch(self, limit: int = 10) -> list[DeviceCommand]:
        """Take up to `limit` (1-100) next commands in queue order; each is now SENT."""
        answer = self._send("GET", "", params={"max": limit})
        return [DeviceCommand.from_json(c) for c in answer.json()["commands"]]

    def ack(self, command_id: str) -> None:
        """Acknowledge a command: SENT -> DELIVERED."""
        self._send("POST", f"/{command_id}/ack")

    def result(self, command_id: str, code: str, detail: Any = None) -> None:
        """Report a command's result, SUCCESSFUL or FAILED (`detail`: any JSON value)."""
        body = {"resultCode": code, "resultDetail": detail}
        self._send("POST", f"/{command_id}/result", json=body)

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = self._http.send(method, self._path + path, auth=self._auth, **kwargs)
        if not response.ok:
            raise error_for(response)
        return response
