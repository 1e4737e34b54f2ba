"""Callbacks reach only allowed addresses: checked again at send time, after DNS resolution, by the
resolver of the callbacks' HTTP client itself (so a name re-pointed since ingest cannot slip by)."""

from __future__ import annotations

import ipaddress
import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from bot.contract.callback_target import AllowList, address_refusal


class CallbackRefused(OSError):
    """The callback's host resolves only to addresses that are not allowed."""


class GuardedResolver(AbstractResolver):
    """Resolves as usual, then keeps only the addresses the allow list permits."""

    def __init__(self, allow: AllowList) -> None:
        self.allow = allow
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if self.allow.allows_host(host):
            return found
        kept = [r for r in found if self.allow.allows_address(ipaddress.ip_address(r["host"]))]
        if not kept:
            reason = address_refusal(host, [ipaddress.ip_address(r["host"]) for r in found], self.allow)
            raise CallbackRefused(reason or f"{host}: no address allowed")
        return kept

    async def close(self) -> None:
        await self._inner.close()


def client_session(allow: AllowList, timeout: float) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow))
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout))
