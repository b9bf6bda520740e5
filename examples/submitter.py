"""A complete submitter: queue commands for a device, then revoke what is still pending and
follow the revocation task live. Uses only `devcmd.client` (`pip install 'devcmd[client]'`).

    DEVCMD_URL=http://127.0.0.1:8080 DEVCMD_APP_ID=... DEVCMD_SECRET=... \\
        python examples/submitter.py --commands 20 --callback-url http://127.0.0.1:8000/devcmd

Prints one JSON line: the device, the commands queued and the task's outcome. Exit status 1
with the service's error code and text when a call fails.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys

from devcmd.client import Client, DevcmdError


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default=os.environ.get("DEVCMD_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--app-id", default=os.environ.get("DEVCMD_APP_ID"))
    parser.add_argument("--secret", default=os.environ.get("DEVCMD_SECRET"))
    parser.add_argument("--node-id", default=f"example-{secrets.token_hex(3)}")
    parser.add_argument("--commands", type=int, default=10)
    parser.add_argument("--callback-url", default=os.environ.get("CALLBACK_URL"))
    parser.add_argument("--keep", action="store_true", help="Do not revoke the commands.")
    args = parser.parse_args()
    if not (args.app_id and args.secret):
        parser.error("--app-id and --secret (or DEVCMD_APP_ID, DEVCMD_SECRET) are required")
    return args


def submit(api: Client, args: argparse.Namespace) -> dict:
    """Register the device, queue the commands, revoke them unless --keep; the summary."""
    device = api.register_device(args.node_id)
    commands = [
        api.create_command(
            device.device_id, "Light", "SET", {"level": n}, callback_url=args.callback_url
        )
        for n in range(args.commands)
    ]
    summary: dict = {"deviceId": device.device_id, "commands": [c.command_id for c in commands]}
    if not args.keep:
        task = api.create_revocation_task(device.device_id)  # revoked as of this answer
        done = api.wait_for_task(task.task_id, timeout=120, progress=True)
        summary["task"] = {
            "taskId": done.task_id,
            "status": done.status,
            "cancelledCount": done.cancelled_count,
            "totalCount": done.total_count,
        }
    return summary


def main() -> int:
    args = arguments()
    try:
        with Client(args.base_url, args.app_id, args.secret, retries=5) as api:
            print(json.dumps(submit(api, args)))
    except DevcmdError as exc:
        print(f"devcmd refused: {exc.error_code} {exc.error_desc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
