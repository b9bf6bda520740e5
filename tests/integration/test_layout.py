"""Layout 3's compact entries answer like the full ones: callback URLs stored once per device
(and inline past the cap), commands found from their id alone, statuses of PENDING commands."""

from __future__ import annotations

import pytest

from devcmd.domain import commands, revocations
from devcmd.store import keys
from tests import backends

pytestmark = [pytest.mark.integration, pytest.mark.backends(*backends.CLUSTERED)]

COMMAND = {"serviceId": "Light", "method": "SET"}


def create(svc, app_id: str, device_id: str, url: str | None) -> dict:
    return commands.create(svc, app_id, device_id, COMMAND, {"callbackUrl": url})


def test_a_callback_url_is_stored_once_per_device(svc, app_id, device_id):
    made = [create(svc, app_id, device_id, "http://127.0.0.1:9/cb") for _ in range(5)]
    assert svc.redis.hlen(keys.callback_urls(app_id, device_id)) == 3  # next, url -> 1, 1 -> url
    assert {commands.get(svc, app_id, m["commandId"])["callbackUrl"] for m in made} == {
        "http://127.0.0.1:9/cb"
    }


def test_every_command_keeps_its_url_past_the_devices_url_table(svc, app_id, device_id):
    count = keys.CALLBACK_URLS_PER_DEVICE + 3
    made = [create(svc, app_id, device_id, f"http://127.0.0.1:9/cb{i}") for i in range(count)]
    made.append(create(svc, app_id, device_id, None))
    urls = [m["callbackUrl"] for m in made]
    ids = [m["commandId"] for m in made]
    assert [commands.get(svc, app_id, cid)["callbackUrl"] for cid in ids] == urls
    assert svc.outbox.callback_urls(app_id, device_id, ids) == urls
    scoped = revocations.open_task(svc, app_id, device_id)["deviceCommands"]
    assert [c["callbackUrl"] for c in scoped] == urls


def test_pending_commands_have_no_status_entry_yet_answer_pending(svc, app_id, device_id):
    made = [create(svc, app_id, device_id, None)["commandId"] for _ in range(3)]
    commands.cancel(svc, app_id, made[0])
    assert svc.redis.hkeys(keys.statuses(app_id, device_id)) == [made[0]]
    assert svc.commands.statuses(app_id, device_id, made) == ["CANCELED", "PENDING", "PENDING"]
    assert [commands.get(svc, app_id, cid)["status"] for cid in made] == svc.commands.statuses(
        app_id, device_id, made
    )


def test_a_command_is_found_from_its_id_alone_in_its_own_application(svc, app_id, device_id):
    made = create(svc, app_id, device_id, None)["commandId"]
    assert svc.commands.device_of(app_id, made) == device_id
    assert svc.commands.device_of("another-app", made) is None
    assert svc.commands.device_of(app_id, made[::-1]) is None
