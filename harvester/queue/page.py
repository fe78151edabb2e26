"""`GET /`: the operator's page, rendered on the server from the status snapshot (plain HTML
and CSS, no script, no build step; it reloads itself). Its words are those of `harvester
status` and `salt-run batch.status` (ccmirror_common/progress.py): "mirrored" is what is
stored, and failed, gone, pending, leased and in backoff stand apart."""

from __future__ import annotations

from functools import cache

from jinja2 import Environment, PackageLoader, select_autoescape

from ccmirror_common.progress import (
    format_catalog_lag,
    format_duration,
    format_mirror_eta,
    format_mirrored,
)

REFRESH_SECONDS = 10
# The bar's parts, in the order they are drawn: the CC photos that count, by where they are.
BAR = ("stored", "failed", "gone", "leased", "in_backoff", "pending")


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("harvester.queue", "templates"),
        autoescape=select_autoescape(["html"]),
    )
    env.filters["duration"] = format_duration
    env.filters["thousands"] = lambda n: f"{n:,}"
    env.filters["words"] = lambda state: state.replace("_", " ")
    return env


def render_status_page(status: dict) -> str:
    words = status["mirror"]
    stored = status["stored"]
    shares = {state: (100 * words[state] / words["of"] if words["of"] else 0.0) for state in BAR}
    return (
        _environment()
        .get_template("status.html")
        .render(
            status=status,
            words=words,
            shares=shares,
            summary=format_mirrored(status["images"], status["items_in_backoff"]),
            eta=format_mirror_eta(stored["last_hour"], stored["to_do"]),
            lag=format_catalog_lag(status["catalog_lag"]),
            refresh=REFRESH_SECONDS,
        )
    )
