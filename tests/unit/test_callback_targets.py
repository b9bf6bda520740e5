"""Where callbacks may point (SSRF guard at creation) and the notification history endpoint."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from devcmd.domain import callback_guard, notifications
from tests.unit.conftest import login_headers

CMDS = "/iocm/app/cmd/v1.4.0/deviceCommands"


def create(client, headers, device_id, url):
    body = {
        "deviceId": device_id,
        "command": {"serviceId": "Light", "method": "ON", "paras": {}},
        "callbackUrl": url,
    }
    return client.post(CMDS, json=body, headers=headers)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/cb",
        "http://metadata.google.internal/cb",
        "http://224.0.0.1/cb",
        "http://0.0.0.0/cb",
        "http://127.0.0.1:9999/cb",
        "http://10.1.2.3/cb",
        "http://192.168.0.10/cb",
        "http://[::1]/cb",
        "http://localhost/cb",
    ],
)
def test_forbidden_targets_are_refused_at_creation(client, svc, headers, device_id, url):
    svc.config = svc.config.with_(callback_allow_private=False)
    reply = create(client, headers, device_id, url)
    assert (reply.status_code, reply.json["error_code"]) == (400, "100022")
    assert "callbackUrl" in reply.json["error_desc"]
    assert client.get(CMDS, headers=headers).json["pagination"]["totalSize"] == 0


def test_private_targets_are_allowed_when_configured(client, svc, headers, device_id):
    svc.config = svc.config.with_(callback_allow_private=True)
    assert create(client, headers, device_id, "http://127.0.0.1:9999/cb").status_code == 201
    assert create(client, headers, device_id, "http://[::1]:9999/cb").status_code == 201
    metadata = create(client, headers, device_id, "http://169.254.169.254/")
    assert metadata.status_code == 400


def test_localhost_resolving_to_ipv6_loopback_is_private_not_reserved(monkeypatch):
    """Where /etc/hosts maps localhost to ::1 too (macOS, many Linux hosts), a callback to
    http://localhost:... is sent when private targets are allowed, refused as loopback when not;
    ::/8's other addresses stay refused as reserved."""
    answer = [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 8080, 0, 0))]
    answer.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 8080)))
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: answer)
    callback_guard.check_resolved("http://localhost:8080/cb", allow_private=True)
    with pytest.raises(callback_guard.Refused, match="loopback"):
        callback_guard.check_resolved("http://localhost:8080/cb", allow_private=False)
    with pytest.raises(callback_guard.Refused, match="reserved"):
        callback_guard.check_address(ipaddress.ip_address("::2"), allow_private=True)


def test_public_targets_are_accepted(client, svc, headers, device_id):
    svc.config = svc.config.with_(callback_allow_private=False)
    assert create(client, headers, device_id, "https://receiver.example.com/cb").status_code == 201


def test_history_lists_a_commands_notifications(client, svc, headers, device_id):
    svc.config = svc.config.with_(callback_allow_private=True)
    command_id = create(client, headers, device_id, "http://127.0.0.1:9/cb").json["commandId"]
    client.put(f"{CMDS}/{command_id}", json={"status": "CANCELED"}, headers=headers)
    notifications.flush(svc, "app-a", device_id)
    reply = client.get(f"{CMDS}/{command_id}/notifications", headers=headers)
    assert reply.status_code == 200
    (only,) = reply.json["notifications"]
    assert only["notificationId"] == f"msg_{command_id}_CANCELED"
    assert (only["status"], only["state"], only["attemptCount"]) == ("CANCELED", "pending", 0)
    assert only["attempts"] == []


def test_history_of_another_apps_command_is_404(client, svc, headers, device_id):
    command_id = create(client, headers, device_id, "https://example.com/cb").json["commandId"]
    other = login_headers(client, svc, "app-b")
    reply = client.get(f"{CMDS}/{command_id}/notifications", headers=other)
    assert (reply.status_code, reply.json["error_code"]) == (404, "100434")


def test_a_unicode_host_is_refused_asking_for_its_idna_form(client, svc, headers, device_id):
    svc.config = svc.config.with_(callback_allow_private=False)
    reply = create(client, headers, device_id, "http://bücher.example/cb")
    assert (reply.status_code, reply.json["error_code"]) == (400, "100022")
    assert "callbackUrl" in reply.json["error_desc"]
    assert "xn--" in reply.json["error_desc"]
    assert create(client, headers, device_id, "http://xn--bcher-kva.example/cb").status_code == 201


def test_a_stored_unicode_host_is_refused_before_a_send_not_resolved(monkeypatch):
    """A URL stored before the rule is not resolved under the name the sender does not contact
    (Python's resolver reads faß.de as fass.de, aiohttp sends to xn--fa-hia.de)."""
    asked = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *args, **kwargs: asked.append(host))
    with pytest.raises(callback_guard.Refused, match="IDNA"):
        callback_guard.check_resolved("http://faß.de/cb", allow_private=False)
    assert asked == []
