"""How a fetch run behaves: global and per-host limits, timeouts, size cap, Retry-After
pauses, fallback, fsync and the allow-list (`FetchSettings`, `HostLimit`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ccmirror_common.hosts import DEFAULT_POLICY, HostPolicy

USER_AGENT = "ccmirror-downloader/0.1"


@dataclass(frozen=True, slots=True)
class HostLimit:
    connections: int = 0  # requests in flight to the host at once; 0: only the global limit
    per_second: float = 0.0  # requests started per second; 0: unlimited


@dataclass(frozen=True)
class FetchSettings:
    concurrency: int = 64  # connections in flight, all hosts together
    # Per-domain limits, like img2dataset's / wget's max_downloads tables: a key matches the
    # host itself and its subdomains ("staticflickr.com" covers farm1.staticflickr.com).
    hosts: Mapping[str, HostLimit] = field(default_factory=dict)
    default_host: HostLimit = HostLimit()
    max_bytes: int = 50 * 1024 * 1024
    max_redirects: int = 5
    total_timeout: float = 120.0  # one request, connect to last byte
    read_timeout: float = 30.0  # longest silence while reading
    connect_timeout: float = 10.0
    # A 429/503 pauses its host for Retry-After (or `default_backoff`), at most `max_pause`;
    # the item then waits it out and tries again up to `waits_per_item` times before `retry`.
    default_backoff: float = 1.0
    max_pause: float = 60.0
    waits_per_item: int = 1
    fallback: bool = True  # on 403/404/410/placeholder, try the item's fallback URL
    fsync: bool = False  # a spool that a crash may lose is re-fetched: the rename suffices
    user_agent: str = USER_AGENT
    allow_hosts: HostPolicy = DEFAULT_POLICY  # the only hosts requested (no SSRF)

    def host_limit(self, host: str) -> HostLimit:
        domain = host
        while True:
            if domain in self.hosts:
                return self.hosts[domain]
            if "." not in domain:
                return self.default_host
            domain = domain.split(".", 1)[1]
