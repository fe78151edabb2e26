"""A daemon's Prometheus listener: `metrics.listen` ("host:port", empty: none) served from a
registry of the daemon's own by prometheus_client in a daemon thread, for as long as the
daemon runs. Shared by the harvester and the downloader (which must not import each other).

The address is checked when the settings are read (`parse_listen`, a ConfigError naming the
setting) and bound before the daemon does any work (`serving`, one clear error when it
cannot be bound): a daemon that cannot be watched does not start unwatched. There is no
default address: Salt renders the droplet's private address, never 0.0.0.0.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, start_http_server

from ccmirror_common.cli import CommandError
from ccmirror_common.settings import ConfigError

log = logging.getLogger("ccmirror.metrics")


class MetricsListenError(CommandError):
    """The metrics address cannot be bound (in use, not this machine's, not allowed): the
    command's one-line error (ccmirror_common/cli.py)."""


def split_listen(value: str) -> tuple[str, int]:
    """ "host:port" or "[v6]:port" -> (host, port); ValueError saying what is wrong."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"must be host:port, not {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"brackets hold an IPv6 address, not {host!r}") from None
    elif ":" in host:
        raise ValueError(f"an IPv6 address goes in brackets ([::1]:9711), not {value!r}")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"the port must be 1 to 65535, not {port_text!r}")
    return host, int(port_text)


def parse_listen(value: object, source: str) -> str:
    """The settings' parser of `metrics.listen`: "" (no listener) or a valid host:port."""
    text = "" if value is None else str(value).strip()
    if text:
        try:
            split_listen(text)
        except ValueError as exc:
            raise ConfigError(f"{source} {exc}") from None
    return text


@dataclass
class MetricsSettings:
    """The `metrics:` section of a daemon's settings."""

    listen: str = field(default="", metadata={"parse": parse_listen})


@contextmanager
def serving(listen: str, registry: CollectorRegistry) -> Iterator[tuple[str, int] | None]:
    """Serve `registry` on `listen` while the block runs (nothing when it is empty); yields
    the bound (host, port). MetricsListenError when it cannot be bound."""
    if not listen:
        yield None
        return
    host, port = split_listen(listen)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise MetricsListenError(
            f"cannot listen for metrics on {listen} (metrics.listen): {exc.strerror or exc}"
        ) from None
    bound = server.server_address[:2]
    log.info("metrics on http://%s/metrics", listen)
    try:
        yield bound[0], bound[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
