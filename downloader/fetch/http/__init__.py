"""A small HTTP/1.1 client on asyncio Protocols: GET, PUT of a body in memory, keep-alive,
streaming bodies, nothing else.

The fetcher's hot path is one small image per request, so CPU per request is the budget. On
this kind of machine aiohttp spends ~150 us of Python per request on its request, response and
stream objects; this client spends ~20-30 us (bench/fetch.py compares the whole stage against
img2dataset). What it does:

- one keep-alive pool per (scheme, host, port); a reused connection that turns out closed
  before any byte of the answer is retried once on a fresh one (the server's idle close);
- `Content-Length`, chunked and read-until-close bodies; bytes past an announced length are a
  malformed response, never part of the body;
- body bytes go to the caller's `sink` from `data_received` itself (hash, checks, spill while
  they arrive; a sink that raises stops the read and closes the connection);
- redirects followed up to a limit, with a hook to stop at a known target (a placeholder);
- timeouts: connect, silence while waiting or reading, total per request (redirects and body
  included), enforced by one sweep over busy connections, not a timer per request;
- https through the default SSL context (certificates verified);
- PUT (the S3 push, downloader/s3/client.py): a body sent after its head in one write, no
  redirect followed;
- only hosts the allow-list names (ccmirror_common/hosts.py), on every redirect hop: a name is
  resolved once per connection, every address checked, and the checked address connected to.
  A client made without a list (the S3 push's: its endpoint is the settings' own) has none.

Modules: `client` (HttpClient: the pool, connect, redirects, timeouts), `connection` (one
connection's exchange and the Response), `target` (a parsed URL and the errors). This package
exports what the fetcher and its tests use.
"""

from downloader.fetch.http.client import HttpClient
from downloader.fetch.http.connection import Response
from downloader.fetch.http.target import (
    BadUrl,
    HttpError,
    Malformed,
    RequestTimeout,
    TooManyRedirects,
    Truncated,
)

__all__ = [
    "BadUrl",
    "HttpClient",
    "HttpError",
    "Malformed",
    "RequestTimeout",
    "Response",
    "TooManyRedirects",
    "Truncated",
]
