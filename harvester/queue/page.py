"""`GET /`: the queue's status page for a person, rendered on the server from the status
snapshot (plain HTML and CSS, no script, no build step; it reloads itself)."""

from __future__ import annotations

from functools import cache

from jinja2 import Environment, PackageLoader, select_autoescape

from ccmirror_common.progress import format_duration
from harvester.queue.status import OUT_OF_QUEUE

REFRESH_SECONDS = 10


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("harvester.queue", "templates"),
        autoescape=select_autoescape(["html"]),
    )
    env.filters["duration"] = format_duration
    env.filters["thousands"] = lambda n: f"{n:,}"
    return env


def render_status_page(status: dict) -> str:
    images = status["images"]
    total = sum(images.values()) - sum(images.get(s, 0) for s in OUT_OF_QUEUE)
    shares = {
        state: (100 * images[state] / total if total else 0.0)
        for state in ("stored", "gone", "failed", "leased", "pending")
    }
    return (
        _environment()
        .get_template("status.html")
        .render(status=status, images=images, total=total, shares=shares, refresh=REFRESH_SECONDS)
    )
