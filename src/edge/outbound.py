"""The one guard every outbound request a tenant can aim goes through: page fetches
(`edge.authoring.fetch`) and webhook deliveries (`edge.control.webhook_dispatch`).

A tenant names the URL; the server makes the request from inside the operator's network.
So, unless the operator lifts the rule (``--dev`` or ``--allow-private-targets``):

- the host is resolved once, and the request is refused when any address it resolves to
  is not a public (global unicast) one: loopback, 0.0.0.0/8 and other unspecified forms,
  link-local (the cloud metadata service at 169.254.169.254 among them), RFC 1918,
  CGNAT, ULA, multicast, reserved and documentation ranges, and IPv6 forms that embed
  such an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo). Decimal,
  octal and hex spellings of IPv4 (``2130706433``, ``0177.0.0.1``) resolve to the
  address they mean and are judged by it;
- the connection is made to the address that was checked, so there is no second DNS
  lookup a rebinding name could answer differently; TLS still verifies the URL's name;
- every redirect hop is a new connection and is checked the same way;
- proxies from the environment are ignored (a proxy would connect on our behalf).

The check happens at connect time, in the network backend of httpcore (httpx's
transport), so no code path can send around it. URLs that are stored and fetched later
(site URLs, webhook endpoints) are also checked when they are registered
(`OutboundGuard.check_url`), for a clear 400 up front; the connect-time check still runs,
since DNS can change in between.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from edge.errors import SplitedgeError
from edge.settings import Settings

__all__ = [
    "IPAddress",
    "OutboundGuard",
    "TargetRefused",
    "is_public_address",
    "resolve",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
"""Host and port to the addresses (as text) a connection may go to."""

# Not covered by ipaddress's is_global in every Python we support, or worth naming.
_REFUSED_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in ("0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "240.0.0.0/4")
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


class TargetRefused(SplitedgeError):
    """The URL leads to an address of the server's own network (loopback, private,
    link-local…), which this server does not send requests to."""

    code = "target_not_allowed"
    status = 400


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or address in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(address: IPAddress) -> bool:
    """Whether ``address`` is a global unicast address that is not the operator's own
    network in any spelling (see the module docstring)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return False
        embedded = _embedded_v4(address)
        if embedded is not None:
            return is_public_address(embedded)
    elif any(address in net for net in _REFUSED_V4):
        return False
    return address.is_global and not address.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to for a TCP connection to ``port``, in the
    resolver's order, without repeats."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _address(text: str) -> IPAddress:
    """An address from its text, without brackets or an IPv6 zone (``%eth0``)."""
    return ipaddress.ip_address(text.strip("[]").split("%")[0])


def _literal(host: str) -> list[IPAddress]:
    """``host`` as an address when it is one in standard notation (other spellings, such
    as ``2130706433``, are left to the resolver, which reads them as the C library does)."""
    try:
        return [_address(host)]
    except ValueError:
        return []


def _host_of(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise ValueError(f"{url[:200]!r} names no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return host, port


class OutboundGuard:
    """Decides where outbound requests may go, and makes the httpx transport that
    enforces it. ``allow_private`` lifts the rule (``--dev``, ``--allow-private-targets``:
    loopback testing); ``resolver`` is DNS (a stub in tests)."""

    def __init__(self, *, allow_private: bool = False, resolver: Resolver = resolve) -> None:
        self.allow_private = allow_private
        self.resolver = resolver

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundGuard:
        """The guard a server runs with: strict unless ``--dev`` or
        ``--allow-private-targets``."""
        return cls(allow_private=settings.dev or settings.allow_private_targets)

    def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The checked addresses to connect to for ``host``; `TargetRefused` when any of
        them is not public (a name with one private answer is refused whole, since a
        later lookup may prefer it). DNS failures raise `OSError`."""
        found = _literal(host) or [_address(a) for a in self.resolver(host, port)]
        if not found:
            raise OSError(f"{host} resolves to no address")
        if not all(self.allows(a) for a in found):
            raise TargetRefused(_refusal(host))
        return found

    def allows(self, address: IPAddress) -> bool:
        """Whether requests may connect to ``address``."""
        return self.allow_private or is_public_address(address)

    def check_url(self, url: str, field: str) -> None:
        """Refuse now (`TargetRefused`, 400) a URL to be stored and requested later when
        its host is or resolves to a non-public address. A URL naming no host is left
        to the caller's own validation, and a name that does not resolve (yet) passes:
        the connect-time check refuses it later if it comes to point inside."""
        if self.allow_private:
            return
        try:
            host, port = _host_of(url)
            self.addresses(host, port)
        except TargetRefused:
            raise TargetRefused(
                f"{field} {url[:200]!r} points to {_refusal(host)}; give a public address "
                "(or start the server with --allow-private-targets to test on a local "
                "network)"
            ) from None
        except (OSError, UnicodeError, ValueError):
            return

    def transport(self) -> httpx.HTTPTransport:
        """An httpx transport whose every connection goes through this guard (TLS
        verified as httpx does by default). Use it with ``trust_env=False`` on the
        client, so no environment proxy is mounted around it."""
        return _GuardedTransport(self)


def _refusal(host: str) -> str:
    return (
        f"{host[:200]!r}, which is or resolves to a non-public address (loopback, "
        "private, link-local or another internal range) that this server does not send "
        "requests to"
    )


class _GuardedBackend(httpcore.NetworkBackend):
    """httpcore's own sync backend, connecting only to addresses the guard approved."""

    def __init__(self, guard: OutboundGuard) -> None:
        self._guard = guard
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self._guard.addresses(host, port)
        except (OSError, UnicodeError, ValueError) as exc:
            raise httpcore.ConnectError(f"could not resolve {host}") from exc
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # addresses() never returns an empty list
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("outbound requests never go to a unix socket")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, guard: OutboundGuard) -> None:
        ssl_context = httpx.create_ssl_context(trust_env=False)
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx builds its httpcore pool without a way to pass a network backend; the
        # pool is the one attribute its request handling uses, so it is rebuilt here with
        # the guarded backend (tests/test_outbound.py fails if that ever stops holding).
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context, network_backend=_GuardedBackend(guard)
        )
