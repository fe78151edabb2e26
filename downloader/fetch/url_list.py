"""`downloader fetch --urls`: fetch a plain URL list into a directory, with progress lines
and a summary of what failed; bad input is refused in one line before anything is fetched."""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from ccmirror_common.hosts import DEFAULT_POLICY, HostPolicy
from ccmirror_common.progress import ProgressLine
from downloader.fetch.fetcher import Fetcher
from downloader.fetch.items import FetchItem
from downloader.fetch.loop import run_async
from downloader.fetch.present import scan_present
from downloader.fetch.progress import FetchProgress
from downloader.fetch.settings import FetchSettings
from downloader.spool import SpoolError

_FLICKR_NAME = re.compile(r"^(\d+)_")


class BadInput(Exception):
    """A URL list or output directory we refuse before fetching anything."""


def read_url_list(path: Path) -> list[FetchItem]:
    """One URL per line (blank lines and `#` comments skipped). The photo id comes from a
    Flickr file name `<id>_<secret>...`, else the line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read: {e}") from None
    items = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = urlsplit(line)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadInput(f"{path}:{number}: not an http(s) URL: {line[:100]!r}")
        name = _FLICKR_NAME.match(parts.path.rsplit("/", 1)[-1])
        items.append(FetchItem(int(name.group(1)) if name else number, line))
    if not items:
        raise BadInput(f"{path}: no URLs in it")
    return items


def prepare_out_dir(out: Path) -> None:
    """Create `out` if needed and prove it writable, so a bad path fails before any fetch."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".ccmirror-write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise BadInput(f"{out}: not a writable directory ({e.strerror or e})") from None


async def fetch_url_list(
    items: list[FetchItem], out: Path, settings: FetchSettings, stream: TextIO
) -> FetchProgress:
    """The daemon's code path for a plain URL list: progress lines, then a summary."""
    shown = ProgressLine(stream, tty_interval=1.0)
    present = scan_present(out) or None  # an empty set: no lookups at all
    async with Fetcher(out, settings, present) as fetcher:
        progress = fetcher.progress
        errors: Counter = Counter()
        async for result in fetcher.stream(items):
            if result.error:
                errors[(result.outcome, result.error.split(":", 1)[0])] += 1
            if shown.due():
                shown.show(progress.line(len(items)))
    shown.show(progress.line(len(items)), final=True)
    for (outcome, reason), count in errors.most_common(10):
        stream.write(f"  {outcome:5} {count:>8,}  {reason}\n")
    return progress


def run_fetch_command(
    urls: Path, out: Path, concurrency: int, allow_hosts: HostPolicy = DEFAULT_POLICY
) -> int:
    """`downloader fetch`: exit 0 after a run (the summary says what failed), 1 on bad input."""
    try:
        if concurrency < 1:
            raise BadInput(f"--concurrency must be at least 1, not {concurrency}")
        items = read_url_list(urls)
        prepare_out_dir(out)
    except BadInput as e:
        print(f"downloader fetch: {e}", file=sys.stderr)
        return 1
    settings = FetchSettings(concurrency=concurrency, allow_hosts=allow_hosts)
    try:
        run_async(fetch_url_list(items, out, settings, sys.stderr))
    except SpoolError as e:
        print(f"\ndownloader fetch: stopped: {e}", file=sys.stderr)
        return 1
    return 0
