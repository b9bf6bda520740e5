"""Domain exceptions. They know nothing about HTTP; `app.errors` maps each to a status and code."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a caller can cause or meet."""

    message = "error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message


class InvalidInput(DomainError):
    message = "The input is invalid."

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


class MissingLoginParameter(DomainError):
    message = "A required login parameter is missing."


class BadCredentials(DomainError):
    message = "appId or secret is not right."


class AppFrozen(DomainError):
    message = "The application is frozen."


class TokenInvalid(DomainError):
    message = "The access token is invalid or expired."


class AppKeyMissing(DomainError):
    message = "Get app_key from header failed."


class AppNotFound(DomainError):
    message = "The application does not exist."


class AppExists(DomainError):
    message = "An application with this appId already exists."


class AppHasDevices(DomainError):
    """Deleting an application that still has devices needs `force`."""

    def __init__(self, count: int) -> None:
        super().__init__(
            f"The application has {count} device(s): delete them first, or use --force to "
            "delete them with it (their undelivered commands are cancelled)."
        )
        self.count = count


class NotAuthorized(DomainError):
    message = "The application has not been authorized."


class DeviceNotFound(DomainError):
    message = "The device does not exist."


class NodeIdTaken(DomainError):
    message = "A device with this nodeId is already registered."


class CommandNotFound(DomainError):
    message = "The device command does not exist."


class CommandNotCancellable(DomainError):
    """The command already left PENDING (delivered, cancelled, expired or finished)."""

    def __init__(self, status: str) -> None:
        super().__init__(f"The command is {status} and can no longer be cancelled.")
        self.status = status


class IllegalTransition(DomainError):
    """A device asked for a transition its command's current status does not allow."""

    def __init__(self, status: str) -> None:
        super().__init__(f"The command is {status}: this transition is not allowed.")
        self.status = status


class DeviceAuthFailed(DomainError):
    message = "Device credentials (HTTP Basic deviceId:psk) are missing or wrong."


class PendingLimitReached(DomainError):
    message = "The device's pending-command limit has been reached."


class TaskNotFound(DomainError):
    message = "The revocation task does not exist."


class IdentityTaken(DomainError):
    """An EnOS identity (assetId, or productKey + deviceKey) already names another device."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field} is already used by another device of this application.")
        self.field = field


class ScopeTooLarge(DomainError):
    """A synchronous cancel-all found more cached commands than it may answer in one request."""

    def __init__(self, total: int, limit: int) -> None:
        super().__init__(
            f"The device has {total} cached commands, more than {limit} can be cancelled in one "
            "request: open a revocation task instead (POST "
            "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks, which answers at once and cancels "
            "them in the background)."
        )
        self.total = total
        self.limit = limit


class Congested(DomainError):
    """A work queue is deeper than its configured limit: new work of this kind waits outside."""

    def __init__(self, queue: str, depth: int, limit: int, retry_after: int) -> None:
        super().__init__(f"The {queue} queue holds {depth} messages (limit {limit}); retry later.")
        self.queue = queue
        self.retry_after = retry_after


class IdempotencyKeyReused(DomainError):
    """The Idempotency-Key was used before with another request (method, path, query, body)."""

    message = (
        "This Idempotency-Key was used with a different request (method, path, query or body): "
        "use a new key for a new request."
    )


class IdempotencyKeyInFlight(DomainError):
    """The first request with this Idempotency-Key is still being served."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "A request with this Idempotency-Key is still being processed; retry after "
            f"{retry_after} s to get its answer."
        )
        self.retry_after = retry_after


class Throttled(DomainError):
    """The calling application used up its calls for this minute (flow control)."""


class StorageUnavailable(DomainError):
    """The data store or the broker cannot take the call now (down, timing out, loading its
    data, read-only after a failover, out of memory, or a cluster failing over); nothing of the
    call was written, and the same call may be repeated after `retry_after` seconds."""

    def __init__(self, cause: str, retry_after: int) -> None:
        super().__init__(f"Storage unavailable ({cause}); retry later.")
        self.cause = cause
        self.retry_after = retry_after
