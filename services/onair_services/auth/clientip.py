"""The client's IP address behind the gateway: ``X-Forwarded-For``, believed from trusted peers only.

A proxy appends the address it received the request from to ``X-Forwarded-For``; anything to the
left of that was written by someone further out — possibly the client itself, so it is worth
nothing unless that hop is also a trusted proxy. :func:`client_ip` walks the chain
``X-Forwarded-For + [TCP peer]`` from the right, skipping addresses in ``trusted`` (the gateway's
networks, ``ONAIR_AUTH_TRUSTED_PROXIES``), and returns the first one that is not trusted: the
address the outermost trusted proxy saw. A request whose TCP peer is not trusted is keyed by the
peer alone, whatever header it sends. An unparsable entry ends the walk (the last good hop is used).

:func:`bucket` turns an address into a rate-limit key: IPv4 as is, IPv6 by its /64 (one
subscriber usually holds a whole /64), IPv4-mapped IPv6 as IPv4.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network


def _parse(text: str) -> Address | None:
    value = text.strip()
    if value.startswith("[") and "]" in value:  # "[2001:db8::1]:443"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "203.0.113.9:5555"
        value = value.split(":", 1)[0]
    try:
        address = ip_address(value)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def client_ip(peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[Network]) -> str:
    """The client's address (see the module docstring); ``"unknown"`` without any."""
    peer_address = _parse(peer) if peer else None
    if peer_address is None:
        return "unknown"
    if not _trusted(peer_address, trusted):
        return str(peer_address)
    chain: list[str] = [part for header in forwarded_for for part in header.split(",") if part.strip()]
    current = peer_address
    for entry in reversed(chain):
        address = _parse(entry)
        if address is None:
            break
        current = address
        if not _trusted(address, trusted):
            break
    return str(current)


def bucket(address: str) -> str:
    """The rate-limit key of an address: IPv6 by /64, IPv4 as is."""
    parsed = _parse(address)
    if isinstance(parsed, IPv6Address):
        return str(IPv6Network((parsed, 64), strict=False))
    return str(parsed) if parsed is not None else address
