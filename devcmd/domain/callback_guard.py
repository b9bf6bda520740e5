"""Where callbacks may go: http(s) URLs whose host is not a link-local, metadata, multicast or
unspecified address, nor (unless CALLBACK_ALLOW_PRIVATE) a private or loopback one.

A host is ASCII: an internationalized name is given in its IDNA form (xn--...). Spelled in
Unicode, it would name two hosts: the resolver checked here encodes it by IDNA 2003 (`faß.de` is
`fass.de`) while the sender's aiohttp encodes it by IDNA 2008 (`xn--fa-hia.de`).

Checked when a command is created (the URL as written) and again before every send (every address
the host resolves to), so a name that later resolves somewhere forbidden is still refused.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from devcmd import errors

METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "100.100.100.200", "fd00:ec2::254")
)
CARRIER_NAT = ipaddress.ip_network("100.64.0.0/10")


class Refused(errors.InvalidInput):
    """A callback target that must not be contacted."""

    def __init__(self, reason: str) -> None:
        super().__init__("callbackUrl", reason)


def check_url(url: str, allow_private: bool) -> None:
    """Refuse a malformed or forbidden callback URL as written (no DNS). Raises Refused."""
    host = _host(url)
    address = _literal(host)
    if address is not None:
        check_address(address, allow_private)
    elif host.rstrip(".").lower() in METADATA_HOSTS:
        raise Refused("metadata hosts are not allowed")
    elif host.rstrip(".").lower() in ("localhost", "localhost.localdomain") and not allow_private:
        raise Refused("loopback hosts are not allowed")


def check_resolved(url: str, allow_private: bool) -> None:
    """Refuse the URL if any address its host resolves to is forbidden. Raises Refused."""
    check_url(url, allow_private)
    parts = urlsplit(url)
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 80, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise Refused(f"host does not resolve: {exc}") from exc
    for info in infos:
        check_address(ipaddress.ip_address(info[4][0].split("%")[0]), allow_private)


def check_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool):
    """Refuse one address by the rules in the module docstring. Raises Refused."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        raise Refused("metadata addresses are not allowed")
    if address.is_link_local or address.is_multicast or address.is_unspecified:
        raise Refused("link-local, multicast and unspecified addresses are not allowed")
    # Python counts ::1 as reserved (it lies in ::/8): loopback is judged below, as 127/8 is.
    if address.is_reserved and not address.is_loopback:
        raise Refused("reserved addresses are not allowed")
    carrier_nat = address.version == 4 and address in CARRIER_NAT
    if (address.is_private or address.is_loopback or carrier_nat) and not allow_private:
        raise Refused("private and loopback addresses are not allowed (CALLBACK_ALLOW_PRIVATE)")


def _host(url: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise Refused("not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("must be an http or https URL with a host")
    if not parts.hostname.isascii():
        raise Refused(
            "the host must be ASCII: give an internationalized name in its IDNA form "
            "(xn--..., e.g. http://xn--bcher-kva.example/ for http://bücher.example/)"
        )
    return parts.hostname


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
