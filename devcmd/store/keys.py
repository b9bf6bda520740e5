"""Every Redis key devcmd uses is built here.

Keys of one device share the hash tag `{appId:deviceId}` and keys of one application the tag
`{appId}`, so every Lua script touches a single slot and the store can move to Redis Cluster.
The global indexes (timers, dirty outboxes, active tasks, due and failed notifications) are
each split into INDEX_BUCKETS buckets, bucket `n` under the hash tag `{bn}`, and a device's
entries always go to bucket `bucket(deviceId)`: the indexes spread over every master.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

PREFIX = "dc"
# 1: one key per global index and a `dc:device-owners` hash; 2: command documents as JSON
# objects with every field (3 stores the compact form of store/document.py: `devcmd migrate`)
LAYOUT_VERSION = 3


def bucket(device_id: str, buckets: int) -> int:
    """The global-index bucket of a device: a pure function of its id."""
    return zlib.crc32(device_id.encode()) % buckets


def layout() -> str:
    """String `<LAYOUT_VERSION>/<INDEX_BUCKETS>`: the key layout this store was written with."""
    return f"{PREFIX}:layout"


def app(app_id: str) -> str:
    return f"{PREFIX}:{{{app_id}}}:app"


def apps() -> str:
    return f"{PREFIX}:apps"


def grants(owner_app_id: str) -> str:
    """Applications allowed to act for `owner_app_id` (the OceanConnect `appId` query parameter)."""
    return f"{PREFIX}:{{{owner_app_id}}}:grants"


def budget(app_id: str) -> str:
    """Hash `<limit>:<minute>` -> northbound calls: the application's flow-control counts (in the
    application's slot, so one script checks the record and counts the call)."""
    return f"{PREFIX}:limits:{{{app_id}}}:northbound"


def app_tokens(app_id: str) -> str:
    """Zset `access:<digest>` / `refresh:<digest>` -> expiry ms: the application's issued tokens,
    so deleting the application can revoke every one of them."""
    return f"{PREFIX}:{{{app_id}}}:tokens"


def access_token(digest: str) -> str:
    return f"{PREFIX}:token:{digest}"


def refresh_token(digest: str) -> str:
    return f"{PREFIX}:refresh:{digest}"


def app_devices(app_id: str) -> str:
    return f"{PREFIX}:{{{app_id}}}:devices"


def app_nodes(app_id: str) -> str:
    return f"{PREFIX}:{{{app_id}}}:nodes"


def app_assets(app_id: str) -> str:
    """Hash EnOS assetId -> deviceId (unique per application)."""
    return f"{PREFIX}:{{{app_id}}}:assets"


def app_device_keys(app_id: str) -> str:
    """Hash `productKey/deviceKey` -> deviceId (EnOS's device triple, unique per application)."""
    return f"{PREFIX}:{{{app_id}}}:device-keys"


def device_key_member(product_key: str, device_key: str) -> str:
    return f"{product_key}/{device_key}"


def app_commands(app_id: str) -> str:
    """Layout 2's zset of the application's command ids by creation time (`devcmd migrate`
    deletes it: layout 3 merges the devices' command indexes instead)."""
    return f"{PREFIX}:{{{app_id}}}:commands"


def app_command_devices(app_id: str) -> str:
    """Layout 2's hash commandId -> deviceId, for the commands created before layout 3; read,
    never written, by layout 3 (which writes `command_devices`)."""
    return f"{PREFIX}:{{{app_id}}}:command-devices"


# Part of the key layout, as INDEX_BUCKETS is: changing it means a new LAYOUT_VERSION.
COMMAND_DEVICE_BUCKETS = 1024


def command_devices(app_id: str, command_id: str) -> str:
    """Hash commandId -> device ordinal: one of COMMAND_DEVICE_BUCKETS buckets of the map that
    finds a command's device from its id alone. Small buckets (up to about 128 x 1,024
    commands per application) stay listpack-encoded, and an ordinal is shorter than a
    deviceId: a fraction of one big commandId -> deviceId hash."""
    number = zlib.crc32(command_id.encode()) % COMMAND_DEVICE_BUCKETS
    return f"{PREFIX}:{{{app_id}}}:command-devices:{number}"


def app_device_ordinals(app_id: str) -> str:
    """Hash `next` -> last ordinal given, `d:<deviceId>` -> its ordinal, `<ordinal>` ->
    deviceId: the numbers `command_devices` stores instead of deviceIds."""
    return f"{PREFIX}:{{{app_id}}}:device-ordinals"


def idempotency(app_id: str, key_digest: str) -> str:
    """Hash of one Idempotency-Key of the calling application: the request's fingerprint, its
    state and, once answered, the answer (expires after IDEMPOTENCY_TTL)."""
    return f"{PREFIX}:{{{app_id}}}:idem:{key_digest}"


def app_command_device_ids(app_id: str) -> str:
    """Set of the devices that have had commands (live or deleted, as their commands stay
    queryable): a status filter without deviceId reads their per-status indexes."""
    return f"{PREFIX}:{{{app_id}}}:command-device-ids"


def app_tasks(app_id: str) -> str:
    return f"{PREFIX}:{{{app_id}}}:tasks"


def app_task_devices(app_id: str) -> str:
    return f"{PREFIX}:{{{app_id}}}:task-devices"


def _device(app_id: str, device_id: str, suffix: str) -> str:
    return f"{PREFIX}:{{{app_id}:{device_id}}}:{suffix}"


def for_device(app_id: str, device_id: str, *builders) -> list[str]:
    """The keys of one device named by their builders, in order: a script's KEYS list."""
    return [build(app_id, device_id) for build in builders]


def device(app_id: str, device_id: str) -> str:
    return _device(app_id, device_id, "device")


def pending(app_id: str, device_id: str) -> str:
    """Zset of PENDING command ids scored by their queue sequence number."""
    return _device(app_id, device_id, "pending")


def statuses(app_id: str, device_id: str) -> str:
    return _device(app_id, device_id, "status")


def callbacks(app_id: str, device_id: str) -> str:
    """Hash commandId -> its callback URL's number in `callback_urls` (or the URL itself, see
    there), for the commands that have one."""
    return _device(app_id, device_id, "callback")


def callback_urls(app_id: str, device_id: str) -> str:
    """Hash `u:<url>` -> number, `<number>` -> url, `next` -> last number: the device's
    distinct callback URLs, each stored once; the callback hash stores their numbers (or the
    URL itself once the device has had CALLBACK_URLS_PER_DEVICE distinct ones)."""
    return _device(app_id, device_id, "callback-urls")


CALLBACK_URLS_PER_DEVICE = 32  # enough for a device's usual one or two; bounds the table read


def device_commands(app_id: str, device_id: str) -> str:
    """Zset commandId -> creation ms of all the device's commands."""
    return _device(app_id, device_id, "commands")


# A command's statuses, in lifecycle order (PENDING first): the per-status indexes below, the
# status filter of queries and retention all name this one tuple.
COMMAND_STATUSES = (
    "PENDING",
    "SENT",
    "DELIVERED",
    "SUCCESSFUL",
    "FAILED",
    "TIMEOUT",
    "CANCELED",
    "EXPIRED",
)


def in_status(status: str) -> Callable[[str, str], str]:
    """The builder of a device's index of commands now in `status` (zset commandId -> creation
    ms): every transition moves the id between two of these in its own Lua step, so a status
    filter counts and pages without reading commands of other statuses."""
    return lambda app_id, device_id: _device(app_id, device_id, f"in:{status}")


def status_debt(app_id: str, device_id: str) -> str:
    """List of `<CANCELED|EXPIRED> id,id,...`: moves out of PENDING that sweep batches made in
    the status hash but not yet in the per-status indexes (settle_statuses.lua applies them
    before the indexes are read), so sweeps stay as cheap as they were."""
    return _device(app_id, device_id, "status-debt")


def expiry(app_id: str, device_id: str) -> str:
    """Zset commandId -> expiry due ms. Lazy: ids that already left PENDING stay until due, and
    the expiry job skips them, so sweeps need not touch this index."""
    return _device(app_id, device_id, "expiry")


def documents(app_id: str, device_id: str) -> str:
    """Hash commandId -> JSON of the command's fixed fields (set once at creation)."""
    return _device(app_id, device_id, "documents")


def lifecycle(app_id: str, device_id: str) -> str:
    """Hash commandId -> JSON of delivery fields (issued/delivered/executed times, result)."""
    return _device(app_id, device_id, "lifecycle")


def in_flight(app_id: str, device_id: str) -> str:
    """Zset commandId -> ack due ms of SENT commands awaiting the device's acknowledgement."""
    return _device(app_id, device_id, "in-flight")


def retransmit(app_id: str, device_id: str) -> str:
    """Zset of SENT commands whose ack is overdue, to be sent again before anything else."""
    return _device(app_id, device_id, "retransmit")


def device_owner(device_id: str) -> str:
    """String: the appId owning a device (devices authenticate with their own id alone). One key
    per device, so these lookups spread over every master of a cluster."""
    return f"{PREFIX}:owner:{{{device_id}}}"


def timers(number: int) -> str:
    """Zset `appId/deviceId` -> the earliest expiry or ack due time of that device's commands
    (one bucket)."""
    return f"{PREFIX}:{{b{number}}}:timers"


def task(app_id: str, device_id: str, task_id: str) -> str:
    return _device(app_id, device_id, f"task:{task_id}")


def device_tasks(app_id: str, device_id: str) -> str:
    return _device(app_id, device_id, "tasks")


def outbox(app_id: str, device_id: str) -> str:
    """List of events `"<status> <ms> <commandId>[,<commandId>...]"` waiting for senders.

    One entry per transition step: a sweep batch records all its commands in one entry."""
    return _device(app_id, device_id, "outbox")


def outbox_lock(app_id: str, device_id: str) -> str:
    return _device(app_id, device_id, "outbox-lock")


def dirty_outboxes(number: int) -> str:
    """Set of `appId/deviceId` whose outbox may hold events (beat drains them; one bucket)."""
    return f"{PREFIX}:{{b{number}}}:outboxes"


def active_tasks(number: int) -> str:
    """Zset `appId/deviceId/taskId` -> last progress ms, for tasks not yet finished (one
    bucket)."""
    return f"{PREFIX}:{{b{number}}}:tasks:active"


def workers() -> str:
    """Zset worker hostname -> last heartbeat ms."""
    return f"{PREFIX}:workers"


def notifications(app_id: str, device_id: str) -> str:
    """Hash `msg_<commandId>_<status>` -> JSON record of that notification: state and attempts."""
    return _device(app_id, device_id, "notifications")


def notifications_due(number: int) -> str:
    """Zset `appId/deviceId/notificationId` -> when its next delivery attempt is due (ms; one
    bucket)."""
    return f"{PREFIX}:{{b{number}}}:notifications:due"


def notifications_failed(number: int) -> str:
    """Zset `appId/deviceId/notificationId` -> when it was given up (ms), for re-sending (one
    bucket)."""
    return f"{PREFIX}:{{b{number}}}:notifications:failed"


def receiver(url_origin: str) -> str:
    """Hash of one receiver's circuit breaker: consecutive failures, open until (ms)."""
    return f"{PREFIX}:receiver:{url_origin}"


def finished(app_id: str, device_id: str) -> str:
    """List of `<ms> <commandId>[,<commandId>...]`, oldest first: the device's commands that
    reached a terminal state, one entry per step (finished_index.lua), so retention finds what
    to remove without reading any other command."""
    return _device(app_id, device_id, "finished")


def finished_tasks(app_id: str, device_id: str) -> str:
    """List of `<ms> <taskId>`, oldest first: the device's revocation tasks that finished."""
    return _device(app_id, device_id, "finished-tasks")


def retention(number: int) -> str:
    """Zset `appId/deviceId` -> when the device's finished work is next due for removal (one
    bucket). A device enters it when registered and leaves it only when purged."""
    return f"{PREFIX}:{{b{number}}}:retention"


def purging() -> str:
    """Set of deleted appIds whose records the purge job is still removing."""
    return f"{PREFIX}:purging"


def notified(app_id: str, device_id: str) -> str:
    """List of `<ms> <notificationId>[,<notificationId>...]`, oldest first: the device's
    notifications that settled for good (delivered, or stopped by a 410), one entry per
    delivery batch, so retention removes their records after NOTIFICATION_RETENTION."""
    return _device(app_id, device_id, "notified")
