"""Typed answers of the northbound and device APIs (OceanConnect field names in snake case).

Times are timezone-aware UTC datetimes (the wire's `yyyyMMdd'T'HHmmss'Z'`), or None. Every object
keeps the answer it was read from in `raw`, for fields a newer server may add.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

HUAWEI_FORMAT = "%Y%m%dT%H%M%SZ"
TASK_DONE = frozenset({"SUCCESS", "PART_SUCCESS", "FAILED"})
COMMAND_DONE = frozenset({"SUCCESSFUL", "FAILED", "TIMEOUT", "CANCELED", "EXPIRED"})


def parse_time(value: str | None) -> datetime | None:
    """OceanConnect's UTC time string as an aware datetime (None stays None)."""
    if not value:
        return None
    return datetime.strptime(value, HUAWEI_FORMAT).replace(tzinfo=UTC)


def format_time(value: datetime) -> str:
    """An aware (or UTC-naive) datetime as OceanConnect's time string, for query filters."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime(HUAWEI_FORMAT)


@dataclass(frozen=True)
class Tokens:
    """A login or refresh answer; `expires_at` is on the local monotonic clock."""

    access_token: str
    refresh_token: str
    expires_in: int
    expires_at: float


@dataclass(frozen=True)
class RegisteredDevice:
    """The answer to a registration: keep `psk`, the device's password for the device API."""

    device_id: str
    verify_code: str
    timeout: int
    psk: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RegisteredDevice:
        return cls(data["deviceId"], data["verifyCode"], data["timeout"], data["psk"], data)


@dataclass(frozen=True)
class Device:
    """A device as `GET .../devices/{deviceId}` answers it."""

    device_id: str
    node_id: str
    pending_commands: int
    create_time: datetime | None
    last_modified_time: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Device:
        return cls(
            data["deviceId"],
            data["deviceInfo"]["nodeId"],
            data["pendingCommands"],
            parse_time(data.get("createTime")),
            parse_time(data.get("lastModifiedTime")),
            data,
        )


@dataclass(frozen=True)
class Command:
    """OceanConnect's DeviceCommandResp."""

    command_id: str
    app_id: str
    device_id: str
    service_id: str
    method: str
    paras: dict[str, Any]
    status: str
    callback_url: str | None
    expire_time: int
    max_retransmit: int
    issued_times: int
    result: dict[str, Any] | None
    creation_time: datetime | None
    execute_time: datetime | None
    platform_issued_time: datetime | None
    delivered_time: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def done(self) -> bool:
        """Whether the command has reached its one terminal status."""
        return self.status in COMMAND_DONE

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Command:
        command = data["command"]
        return cls(
            data["commandId"],
            data["appId"],
            data["deviceId"],
            command["serviceId"],
            command["method"],
            command.get("paras") or {},
            data["status"],
            data.get("callbackUrl"),
            data["expireTime"],
            data["maxRetransmit"],
            data.get("issuedTimes", 0),
            data.get("result"),
            parse_time(data.get("creationTime")),
            parse_time(data.get("executeTime")),
            parse_time(data.get("platformIssuedTime")),
            parse_time(data.get("deliveredTime")),
            data,
        )


@dataclass(frozen=True)
class RevocationTask:
    """A revocation task; `device_commands` (its scope) comes only with the create answer."""

    task_id: str
    app_id: str
    device_id: str
    status: str
    total_count: int
    cancelled_count: int
    reason: str | None
    creation_time: datetime | None
    start_time: datetime | None
    finish_time: datetime | None
    device_commands: list[Command]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def done(self) -> bool:
        """Whether the task is SUCCESS, PART_SUCCESS or FAILED."""
        return self.status in TASK_DONE

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RevocationTask:
        return cls(
            data["taskId"],
            data["appId"],
            data["deviceId"],
            data["status"],
            data["totalCount"],
            data.get("cancelledCount") or 0,
            data.get("reason"),
            parse_time(data.get("creationTime")),
            parse_time(data.get("startTime")),
            parse_time(data.get("finishTime")),
            [Command.from_json(c) for c in data.get("deviceCommands", [])],
            data,
        )


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt of a callback: when, the receiver's status (None: no answer)."""

    time: datetime | None
    http_status: int | None
    latency_ms: float | None
    error: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attempt:
        return cls(
            parse_time(data.get("time")),
            data.get("httpStatus"),
            data.get("latencyMs"),
            data.get("error"),
        )


@dataclass(frozen=True)
class Notification:
    """One callback of a command (one status change) and its delivery attempts."""

    notification_id: str
    status: str
    url: str
    state: str
    attempt_count: int
    next_attempt: datetime | None
    attempts: list[Attempt]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notification:
        return cls(
            data["notificationId"],
            data["status"],
            data["url"],
            data["state"],
            data.get("attemptCount", 0),
            parse_time(data.get("nextAttempt")),
            [Attempt.from_json(a) for a in data.get("attempts", [])],
        )


@dataclass(frozen=True)
class DeviceCommand:
    """A command as the device API hands it to a device."""

    command_id: str
    service_id: str
    method: str
    paras: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeviceCommand:
        return cls(data["commandId"], data["serviceId"], data["method"], data.get("paras") or {})
