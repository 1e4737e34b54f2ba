"""Which addresses an agent's `callback_url` may reach: public ones, plus what
COUNTERSIGN_CALLBACK_ALLOW names (CIDRs or host names). Private, loopback, link-local and
metadata targets are refused by default, so Countersign is never an SSRF relay into its own network.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata services reached by name (their addresses are link-local and refused anyway).
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "instance-data", "metadata.azure.internal"})
RESOLVE_SECONDS = 1.0  # at ingest: a name that does not resolve this fast is checked again when sending


@dataclass(frozen=True)
class AllowList:
    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @staticmethod
    @functools.lru_cache(maxsize=16)
    def parse(text: str) -> AllowList:
        """`10.0.0.0/8, 127.0.0.1, hooks.internal` -> networks and host names; a bad entry is named."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
                continue
            except ValueError:
                pass
            name = item.lower().rstrip(".")
            if not name.replace("-", "").replace(".", "").replace("_", "").isalnum() or "/" in item:
                raise ValueError(f"COUNTERSIGN_CALLBACK_ALLOW: {item!r} is neither a CIDR nor a host name")
            hosts.add(name)
        return AllowList(tuple(networks), frozenset(hosts))

    def allows_address(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address.version == net.version and address in net for net in self.networks):
            return True
        return address.is_global and not address.is_multicast

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def address_refusal(host: str, addresses: list[IPAddress], allow: AllowList) -> str | None:
    """Why no address of `host` may be reached, or None when at least one may (only those are used)."""
    if allow.allows_host(host) or any(allow.allows_address(a) for a in addresses):
        return None
    shown = ", ".join(sorted({str(a) for a in addresses}))
    return (f"{host} is a private, loopback, link-local or metadata address ({shown}); "
            "allow it with COUNTERSIGN_CALLBACK_ALLOW")


async def resolve(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


async def refusal(url: str, allow: AllowList, *, strict: bool) -> str | None:
    """Why `url` must not be called, or None. A name is resolved; `strict` (at send time) refuses a
    name that does not resolve, while ingest accepts it (it is checked again when sending)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        return "the URL has no host"
    if allow.allows_host(host):
        return None
    literal = _literal(host)
    if literal is not None:
        return address_refusal(host, [literal], allow)
    if host in METADATA_NAMES:
        return f"{host} is a cloud metadata service"
    try:
        async with asyncio.timeout(RESOLVE_SECONDS):
            addresses = await resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    except (OSError, TimeoutError, UnicodeError) as exc:
        return f"{host} does not resolve: {exc}" if strict else None
    return address_refusal(host, addresses, allow) if addresses else None
