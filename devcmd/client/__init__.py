"""devcmd's Python client: `Client` for an application's calls (OceanConnect northbound API)
and `DeviceClient` for a device's. Needs only `requests` (and `rich` for a progress bar), never
Flask or Celery: `pip install 'devcmd[client]'`.

    from devcmd.client import Client

    with Client("http://127.0.0.1:8080", app_id, secret) as api:
        device = api.register_device("meter-1")
        command = api.create_command(device.device_id, "Light", "SET", {"level": 3})
        task = api.create_revocation_task(device.device_id)
        done = api.wait_for_task(task.task_id, timeout=60, progress=True)
"""

from devcmd.client.device import DeviceClient
from devcmd.client.errors import ApiError, DevcmdError, TaskTimeout, Throttled, Unreachable
from devcmd.client.models import (
    COMMAND_DONE,
    TASK_DONE,
    Attempt,
    Command,
    Device,
    DeviceCommand,
    Notification,
    RegisteredDevice,
    RevocationTask,
)
from devcmd.client.northbound import Client, Page
from devcmd.client.transport import Transport

__all__ = [
    "COMMAND_DONE",
    "TASK_DONE",
    "ApiError",
    "Attempt",
    "Client",
    "Command",
    "DevcmdError",
    "Device",
    "DeviceClient",
    "DeviceCommand",
    "Notification",
    "Page",
    "RegisteredDevice",
    "RevocationTask",
    "TaskTimeout",
    "Throttled",
    "Transport",
    "Unreachable",
]
