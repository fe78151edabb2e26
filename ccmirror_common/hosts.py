"""Where an image may be fetched from: the host allow-list both sides of the fleet share.

The downloader requests only hosts the list allows, on every redirect hop, and connects only
to addresses it allows after name resolution; the harvester refuses, at import, a photo whose
image or fallback URL is on another host (by name only: no DNS at import).

The list (`fetch.allow_hosts` in the settings, `CCMIRROR_FETCH_ALLOW_HOSTS` comma-separated)
holds host names (`live.staticflickr.com`), `*.` wildcards that match subdomains
(`*.staticflickr.com` matches `farm1.staticflickr.com`, not `staticflickr.com` itself) and IP
addresses (`127.0.0.1`, `::1`). Entries are lower-cased; ports, URLs, networks and other
wildcards are refused with one clear error. The default is Flickr's image hosts.

An address that is loopback, private, link-local (the cloud metadata address 169.254.169.254
among them), multicast, reserved, unspecified or otherwise not public is refused unless the
list names that exact address, whatever name led to it: IPv6 included, and an IPv4 address
inside an IPv6 one (IPv4-mapped `::ffff:a.b.c.d`, 6to4, NAT64) is judged as the IPv4 address.

Standard library only: the harvester and the downloader import it, and nothing else.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
DEFAULT_ALLOW_HOSTS: tuple[str, ...] = ("*.staticflickr.com", "*.flickr.com")
ENV_VARIABLE = "CCMIRROR_FETCH_ALLOW_HOSTS"
METADATA_ADDRESS = ipaddress.IPv4Address("169.254.169.254")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_DECISIONS_KEPT = 10_000  # hosts remembered per list: a URL list of random hosts stays bounded


class HostListError(ValueError):
    """An allow-list entry that is not a host name, a `*.` wildcard or an address."""


class HostRefused(ValueError):
    """A host or address the list does not allow; the message is one bounded line."""


class HostPolicy:
    """A parsed allow-list; answers "is this host allowed" and "is this address allowed"."""

    __slots__ = ("entries", "_names", "_suffixes", "_addresses", "_decisions", "_authorities")

    def __init__(self, entries: Iterable[str]) -> None:
        if isinstance(entries, str):
            entries = entries.split(",")
        names: set[str] = set()
        suffixes: list[str] = []
        addresses: set[IPAddress] = set()
        kept: list[str] = []
        for raw in entries:
            entry = _entry(raw)
            if entry is None:
                continue
            if isinstance(entry, IPAddress):
                addresses.add(entry)
            elif entry.startswith("*."):
                suffixes.append(entry[1:])
            else:
                names.add(entry)
            kept.append(str(entry))
        if not kept:
            raise HostListError("the host allow-list is empty: no image could be fetched")
        self.entries = tuple(dict.fromkeys(kept))
        self._names = frozenset(names)
        self._suffixes = tuple(suffixes)
        self._addresses = frozenset(addresses)
        self._decisions: dict[str, bool] = {}
        self._authorities: dict[str, bool] = {}  # allows_url's cache: `host[:port]` -> verdict

    def __repr__(self) -> str:
        return f"HostPolicy({list(self.entries)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HostPolicy) and set(self.entries) == set(other.entries)

    def __hash__(self) -> int:
        return hash(frozenset(self.entries))

    # ------------------------------------------------------------------ by name
    def allows_host(self, host: str) -> bool:
        """Whether the list names `host` (a name or an address literal, as in a URL)."""
        decision = self._decisions.get(host)
        if decision is None:
            decision = self._decide(host)
            if len(self._decisions) >= _DECISIONS_KEPT:
                self._decisions.clear()
            self._decisions[host] = decision
        return decision

    def _decide(self, host: str) -> bool:
        host = host.lower().rstrip(".").removeprefix("[").removesuffix("]")
        literal = _address(host)
        if literal is not None:
            return literal in self._addresses or _unmapped(literal) in self._addresses
        if not _NAME.fullmatch(host):
            return False
        return host in self._names or any(
            host.endswith(suffix) and len(host) > len(suffix) for suffix in self._suffixes
        )

    def allows_url(self, url: str) -> bool:
        """Whether `url` is http(s) on an allowed host. One split and a dict lookup for the
        usual URL (a YFCC100M import asks twice per line); anything odd takes check_url."""
        if url.startswith("https://"):
            start = 8
        elif url.startswith("http://"):
            start = 7
        else:
            return self.check_url(url) is None
        end = url.find("/", start)
        authority = url[start:end] if end > 0 else url[start:]
        decision = self._authorities.get(authority)
        if decision is None:
            decision = self.check_url(url) is None
            if len(self._authorities) >= _DECISIONS_KEPT:
                self._authorities.clear()
            self._authorities[authority] = decision
        return decision

    def check_url(self, url: str) -> str | None:
        """None when `url` is http(s) on an allowed host, else why not (one line)."""
        host = url_host(url)
        if host is None:
            return f"not a plain http(s) URL: {url[:100]!r}"
        if not self.allows_host(host):
            return f"host not allowed: {host[:100]}"
        return None

    # ------------------------------------------------------------------ by address
    def address_refusal(self, address: str | IPAddress) -> str | None:
        """None when a resolved `address` may be connected to, else what kind it is."""
        ip = address if isinstance(address, IPAddress) else _address(address)
        if ip is None:
            return f"not an IP address: {str(address)[:60]!r}"
        if ip in self._addresses:
            return None
        inner = _embedded_ipv4(ip)
        if inner is not None:
            if inner in self._addresses:
                return None
            kind = _special(inner)
            return f"{kind} ({inner} inside {ip})" if kind else None
        return _special(ip)

    async def resolve(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> list[str]:
        """The addresses to connect to for an allowed `host`: every address its name
        resolves to is checked, and the caller connects to these, never resolving again (a
        second lookup could answer otherwise: DNS rebinding). HostRefused when the host or
        any of its addresses is not allowed; OSError when the name does not resolve."""
        if not self.allows_host(host):
            raise HostRefused(f"host not allowed: {host[:100]}")
        literal = _address(host.strip("[]"))
        if literal is not None:
            found = [str(literal)]
        else:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            found = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in found:
            why = self.address_refusal(address)
            if why is not None:
                raise HostRefused(f"host not allowed: {host[:100]} resolves to {address} ({why})")
        if not found:
            raise OSError(f"{host[:100]}: no address")
        return found


def url_host(url: str) -> str | None:
    """The host of an http(s) URL, lower case; None for another scheme, no host, or a
    user-info part (`user@host`: never in an image URL, and a way to disguise a host)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return None
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in authority or "\\" in authority:
        return None
    if authority.startswith("["):
        host = authority[1 : authority.find("]")]
    else:
        host, _, port = authority.partition(":")
        if port and not port.isdigit():
            return None
    return host.lower() or None


def _entry(raw: str) -> str | IPAddress | None:
    """One list entry, normalised; None for a blank one (a trailing comma)."""
    if not isinstance(raw, str):
        raise HostListError(f"allow-list entry {raw!r} is not a string")
    entry = raw.strip().lower().rstrip(".")
    if not entry:
        return None
    shown = repr(raw.strip()[:100])
    if "/" in entry or "@" in entry:
        raise HostListError(f"allow-list entry {shown}: a host name or address, not a URL")
    bare = entry[1:-1] if entry.startswith("[") and entry.endswith("]") else entry
    address = _address(bare)
    if address is not None:
        return address
    if ":" in entry:
        raise HostListError(f"allow-list entry {shown}: no port (every port of a host is allowed)")
    name = entry[2:] if entry.startswith("*.") else entry
    if not entry.isascii() or not _NAME.fullmatch(name) or len(name) > 253:
        raise HostListError(
            f"allow-list entry {shown}: not a host name, a `*.` wildcard or an IP address"
        )
    if name != entry and "." not in name:
        raise HostListError(f"allow-list entry {shown}: a wildcard over a whole top-level domain")
    return entry


def _address(text: str) -> IPAddress | None:
    if not text or not (text[0].isdigit() or ":" in text):
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        ip = ipaddress.IPv6Address(text.partition("%")[0])
    return ip


def _unmapped(ip: IPAddress) -> IPAddress:
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return mapped or ip


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries to an IPv4 host (mapped, 6to4, NAT64)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _special(ip: IPAddress) -> str | None:
    """What kind of non-public address `ip` is; None for a public one."""
    if ip == METADATA_ADDRESS:
        return "the cloud metadata address"
    for kind, flag in (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    ):
        if flag:
            return f"{kind} address"
    return None if ip.is_global else "not a public address"


DEFAULT_POLICY = HostPolicy(DEFAULT_ALLOW_HOSTS)
