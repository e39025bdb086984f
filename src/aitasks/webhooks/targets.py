"""Where webhooks may go. Only http(s), and, unless the operator allows it, never to this
machine's network: loopback, private, link-local (cloud metadata at 169.254.169.254), multicast
or reserved addresses. Checked when a task is submitted (the URL's form, and its host when that is
an address) and again before each delivery (what the name resolves to then)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

from aitasks.errors import InvalidRequest

MAX_URL_CHARS = 2000


class RefusedTarget(InvalidRequest):
    """A callback URL that may not be called."""


def _refused_address(address: str) -> str | None:
    """Why this address is off limits, or None when it is a public one."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local:
            return "site-local"
        # An IPv4 address carried inside an IPv6 one (mapped, 6to4, Teredo) is judged as itself.
        for inner in (ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())):
            if inner is not None:
                reason = _refused_address(str(inner))
                if reason is not None:
                    return reason
        if ip.ipv4_mapped is not None:
            return None
    for reason, hit in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved or ip.is_unspecified),
    ):
        if hit:
            return reason
    return None if ip.is_global else "not public"


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL, if a webhook may be sent to it; else `RefusedTarget` saying why."""
    if len(url) > MAX_URL_CHARS:
        raise RefusedTarget(
            f"callback_url is longer than {MAX_URL_CHARS} characters", param="callback_url"
        )
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        # CR/LF and other controls: a URL no HTTP client will send (it would split a header).
        raise RefusedTarget(
            "callback_url must not contain spaces or control characters", param="callback_url"
        )
    try:
        parts = urlsplit(url)
        httpx.URL(url)  # what the sender will parse it with, refused now rather than at delivery
    except (ValueError, httpx.InvalidURL) as exc:
        raise RefusedTarget(
            f"callback_url is not a valid URL: {exc}", param="callback_url"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedTarget(
            "callback_url must be an absolute http:// or https:// URL", param="callback_url"
        )
    if parts.username or parts.password:
        raise RefusedTarget("callback_url must not carry credentials", param="callback_url")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        raise RefusedTarget("callback_url has an invalid port", param="callback_url") from None
    if allow_private:
        return url
    host = parts.hostname
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        raise RefusedTarget(
            f"callback_url may not point at {host}: private destinations are refused",
            param="callback_url",
        )
    try:
        reason = _refused_address(host)
    except ValueError:
        return url  # a name: resolved and checked before each delivery
    if reason is not None:
        raise RefusedTarget(
            f"callback_url may not point at a {reason} address ({host})", param="callback_url"
        )
    return url


async def check_resolved(url: str, *, allow_private: bool) -> None:
    """Before a delivery: every address the host resolves to now must be public."""
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise RefusedTarget(f"cannot resolve {host}: {exc}", param="callback_url") from None
    for info in infos:
        address = str(info[4][0])
        reason = _refused_address(address)
        if reason is not None:
            raise RefusedTarget(
                f"{host} resolves to a {reason} address ({address}); refused",
                param="callback_url",
            )
