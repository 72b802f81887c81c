"""Requests the server makes itself (webhooks): only to public addresses unless allowed, and to exactly those.

A queued task must not become a way into the server's own network (SSRF). The text of a host says little:
`getaddrinfo` reads `127.1`, `2130706433`, `0x7f.1` and `0177.0.0.1` as 127.0.0.1, and a name may resolve to
anything, differently from one moment to the next. So the host is resolved, every address it resolves to is
vetted (one bad address refuses the name), and the connection is opened to a vetted address itself (pinned): DNS
answering otherwise between the check and the connect (rebinding) reaches nothing new. The Host header, TLS SNI
and the certificate check still use the URL's host name. No redirects are followed and no proxy is used (a proxy
would be vetted instead of the target); only the status line and headers of an answer are read.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Iterable[str]]

# Named, and checked before `ipaddress`'s own flags, which miss some (on 3.11 and 3.12: CGNAT is not
# `is_private`, multicast is `is_global`, 6to4 of 127.0.0.1 is `is_global`).
_RANGES = tuple(
    (ipaddress.ip_network(network), kind)
    for network, kind in (
        ("0.0.0.0/8", "unspecified"),  # on Linux, connecting to 0.0.0.0 reaches this machine
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "documentation"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("64:ff9b:1::/48", "local NAT64"),
        ("100::/64", "discard"),
        ("2001::/32", "Teredo"),
        ("2001:db8::/32", "documentation"),
        ("2002::/16", "6to4"),
        ("fc00::/7", "private (unique local)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Refused(Exception):
    """The URL may not be called: `str(error)` says why, fit to show to whoever gave the URL."""


def forbidden_kind(address: IPAddress) -> str | None:
    """What kind of non-public address this is ("loopback", "private", …), or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address inside an IPv6 one reaches that IPv4 address: judge it instead.
        if address.ipv4_mapped is not None:
            return forbidden_kind(address.ipv4_mapped)
        if address in _NAT64:
            return forbidden_kind(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    for network, kind in _RANGES:
        if address.version == network.version and address in network:
            return kind
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved or address.is_unspecified or not address.is_global:
        return "reserved"
    return None


@dataclass(frozen=True)
class Target:
    """A URL as it is called: scheme, host (as in the URL, lowercased), port, and the path with its query."""

    scheme: str
    host: str
    port: int
    path: str

    @property
    def origin(self) -> str:
        """scheme://host:port: what logs show of a URL (its path and query may carry a receiver's token)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def target(url: str) -> Target:
    """The parts of an http(s) URL; raises Refused for anything else (core.rules.callback_url_problem says why
    in more words, at submission)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise Refused(f"It is not a valid URL ({error}).") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        raise Refused("It is not an http:// or https:// URL with a host.")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path)


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, as the system's resolver answers (which reads every IPv4 spelling)."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


@dataclass(frozen=True)
class Policy:
    """Where calls may go. `allow_private` lifts the address rule entirely (a home network: the receiver is on
    the LAN, or on this machine); the scheme rule stays."""

    allow_private: bool = False
    resolver: Resolver = system_resolver

    def addresses(self, call: Target) -> list[str]:
        """The vetted addresses to connect to, in the resolver's order; raises Refused."""
        try:
            answers = list(self.resolver(call.host, call.port))
        except (OSError, UnicodeError) as error:  # socket.gaierror is an OSError; UnicodeError: a bad IDNA label
            raise Refused(f"Its host {call.host!r} does not resolve ({error}).") from None
        vetted: list[str] = []
        for answer in answers:
            address = ipaddress.ip_address(answer.split("%", 1)[0])  # an IPv6 zone id (fe80::1%eth0) is no address
            kind = forbidden_kind(address)
            if kind is not None and not self.allow_private:
                raise Refused(
                    f"Its host {call.host!r} is or resolves to a {kind} address: webhooks go to public addresses "
                    "only, unless the server is started with --allow-private-webhooks."
                )
            if str(address) not in vetted:
                vetted.append(str(address))
        if not vetted:
            raise Refused(f"Its host {call.host!r} does not resolve to any address.")
        return vetted

    def problem(self, url: str) -> str | None:
        """Why `url` may not be called now, or None."""
        try:
            self.addresses(target(url))
        except Refused as refused:
            return str(refused)
        return None


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # lowercased names


class _Pinned(http.client.HTTPConnection):
    """An HTTP(S) connection to one vetted address, speaking to the URL's host (Host header, SNI, certificate)."""

    def __init__(self, call: Target, address: str, connect_timeout: float, tls: ssl.SSLContext | None) -> None:
        super().__init__(call.host, call.port, timeout=connect_timeout)
        self.default_port = 443 if tls is not None else 80  # the Host header names the port only if not this
        self._address = address
        self._tls = tls

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host) if self._tls is not None else sock


class Unreachable(OSError):
    """No vetted address took the connection: nothing was sent."""


def post(
    call: Target,
    addresses: Iterable[str],
    body: bytes,
    headers: Mapping[str, str],
    *,
    connect_timeout: float,
    timeout: float,
    tls: ssl.SSLContext | None = None,
) -> Answer:
    """POST `body` to the first vetted address that takes the connection. At most `timeout` seconds in all, since
    a receiver may trickle its answer a byte at a time; raises OSError (Unreachable if nothing was sent)."""
    context = (tls or ssl.create_default_context()) if call.scheme == "https" else None
    started = time.monotonic()
    last: OSError | None = None
    for address in addresses:
        left = timeout - (time.monotonic() - started)
        if left <= 0:
            break
        connection = _Pinned(call, address, min(connect_timeout, left), context)
        try:
            connection.connect()
        except OSError as error:
            connection.close()
            last = error
            continue
        # Once connected, no other address is tried: the receiver may have the call already.
        return _exchange(connection, call, body, headers, timeout - (time.monotonic() - started))
    raise Unreachable(f"cannot connect to {call.origin}: {last or 'out of time'}")


def _exchange(connection: _Pinned, call: Target, body: bytes, headers: Mapping[str, str], seconds: float) -> Answer:
    # A watchdog ends the exchange at the deadline: socket timeouts bound each read, not their sum.
    cut = threading.Event()
    watchdog = threading.Timer(max(seconds, 0.0), _cut, (connection, cut))
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.sock.settimeout(max(seconds, 0.001))
        connection.request("POST", call.path, body=body, headers=dict(headers))
        response = connection.getresponse()  # the status line and headers only; the body is never read
        answer = Answer(response.status, {name.lower(): value for name, value in response.getheaders()})
    except (OSError, http.client.HTTPException, ValueError) as error:  # ValueError: e.g. too many headers
        if cut.is_set() or isinstance(error, TimeoutError):
            raise TimeoutError(f"{call.origin} did not answer within {seconds:.1f} s") from None
        raise OSError(f"no good answer from {call.origin}: {error!r}") from None
    finally:
        watchdog.cancel()
        connection.close()
    if cut.is_set():  # the headers read up to the cut can look complete: an answer cut short is none
        raise TimeoutError(f"{call.origin} did not answer within {seconds:.1f} s")
    return answer


def _cut(connection: _Pinned, cut: threading.Event) -> None:
    cut.set()
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
