"""The fetch stage: download images concurrently, verify them while streaming, hash and write.

One `Fetcher` (asyncio, our own HTTP client, one connection pool) serves a whole run. A daemon
hands it one lease's items and takes results as they finish::

    async with Fetcher(spool, FetchSettings(...), present=OnDisk(spool)) as fetcher:
        async for result in fetcher.stream(items):
            journal.record(result)            # result.report() is the queue's item format
        fetcher.progress.line(len(items))     # counts by outcome, rate, ETA

Each item ends in exactly one outcome: `stored` (written to `<out>/<photo_id>.<ext>` by temp
file and rename, with its sha256 and its storage key `layout.image_path`), or a failure class
for the queue: `gone` (404, 410, 403 without Retry-After from the URL and its fallback: a
private photo, Flickr's "photo unavailable" placeholder), `retry` (5xx, 429, 403 with
Retry-After, timeouts, resets, truncated bodies, redirect loops) or `bad` (not an image, body
longer than announced, over the size cap, other 4xx). Nothing but a verified image is ever
renamed into place.

Why our own HTTP client (downloader/fetch/http/): CPU per image is the budget on a one-vCPU
droplet. One event loop with pooled keep-alive connections costs a fraction of a thread per
connection, and a bare Protocol parser costs a fraction of aiohttp's per request; the body is
hashed, checked and kept as it arrives, in the connection's data_received (see bench/fetch.py).
Workers take jobs from a scheduler that keeps per-host queues, so hosts at their limit, paused
or rate-held never hold workers that other hosts could use.

One module per job:

- `items`: what goes in and comes out (`FetchItem`, `FetchResult`, the outcomes);
- `settings`: limits, timeouts, caps (`FetchSettings`, `HostLimit`);
- `fetcher`: the `Fetcher`, an item's exchanges and their verdicts;
- `scheduler`: per-host concurrency and politeness (which job runs next);
- `body`: a body's bytes as they arrive (cap, magic bytes, sha256, spill to a temp file);
- `http`: the HTTP/1.1 client (a pool of keep-alive connections, GET, redirects);
- `present`: what an earlier run already stored;
- `progress`: counts, rate and ETA as one line;
- `loop`: the event loop a run is on (uvloop when installed);
- `url_list`: the `downloader fetch --urls` command.

This package exports what the rest of the downloader uses: the daemon's stages and the CLI.
"""

from downloader.fetch.fetcher import Fetcher
from downloader.fetch.items import FetchItem, FetchResult
from downloader.fetch.loop import run_async
from downloader.fetch.present import OnDisk
from downloader.fetch.settings import FetchSettings, HostLimit
from downloader.fetch.url_list import run_fetch_command

__all__ = [
    "FetchItem",
    "FetchResult",
    "FetchSettings",
    "Fetcher",
    "HostLimit",
    "OnDisk",
    "run_async",
    "run_fetch_command",
]
