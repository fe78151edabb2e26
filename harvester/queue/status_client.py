"""The running queue's `GET /v1/status`, read on the machine that runs it: what `harvester
queue-status` prints for `salt-run batch.status`.

The queue listens on the private network only, so the reader is the database minion itself,
at the address the queue's own settings bind; no token is sent (the queue's `status_allow`
holds its own addresses). Standard library only: no HTTP client beyond urllib is needed.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from ccmirror_common.progress import format_duration, format_mirrored, format_stored_rate
from harvester.config import QueueSettings

TIMEOUT_SECONDS = 30
ALL_INTERFACES = ("", "0.0.0.0")  # a queue bound to every address answers on loopback


class QueueUnreachable(RuntimeError):
    """The queue did not answer with its status; the message says where it was asked."""


def status_url(queue: QueueSettings) -> str:
    """/v1/status at the address `queue` binds (loopback for all interfaces)."""
    host = "127.0.0.1" if queue.bind in ALL_INTERFACES else queue.bind
    if ":" in host:  # an IPv6 address goes in brackets in a URL
        host = f"[{host}]"
    return f"http://{host}:{queue.port}/v1/status"


def fetch_status(queue: QueueSettings, timeout: float = TIMEOUT_SECONDS) -> dict:
    """The queue's status as it serves it; QueueUnreachable when it does not answer so."""
    url = status_url(queue)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise QueueUnreachable(f"the queue at {url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise QueueUnreachable(f"the queue did not answer at {url}: {reason}") from None
    try:
        status = json.loads(body)
    except ValueError:
        raise QueueUnreachable(f"the queue at {url} answered no JSON") from None
    if not isinstance(status, dict):
        raise QueueUnreachable(f"the queue at {url} answered no status object")
    return status


def format_queue_status(status: dict) -> str:
    """The status in a few lines for a terminal."""
    images = status.get("images", {})
    eta = status.get("eta_seconds")
    lines = [
        "maintenance " + ("on" if status.get("maintenance") else "off"),
        "photos: " + format_mirrored(images, status.get("items_in_backoff")),
        f"leases out: {status.get('leases_active')} ({status.get('items_leased_out')} photos),"
        f" {status.get('stored_per_second_5m')} stored/s, queue drained in "
        + ("unknown" if eta is None else format_duration(eta)),
        f"retry backoff: {status.get('items_in_backoff', 0)} photos wait to be leased again",
    ]
    if status.get("stored"):  # a queue older than the operator's page has no such figures
        lines.append(format_stored_rate(status["stored"]))
    lines += [
        f"{row['worker']}: {row.get('stored_per_second_5m')}/s, {row.get('stored_1h')} in 1h"
        for row in status.get("workers", [])
    ]
    return "\n".join(lines)
