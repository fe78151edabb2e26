"""What the HTTP client (downloader/fetch/http/client.py) requests, and how an exchange
fails: a parsed URL (`Target`) and the errors, each one line for a report."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

_SAFE_URL_CHARS = "/:@!$&'()*+,;=?%~-._"


class HttpError(Exception):
    """A failure of the exchange itself; the message is one line for a report."""


class BadUrl(HttpError):
    """Not an http(s) URL we can request."""


class HostNotAllowed(BadUrl):
    """A host, or an address its name resolves to, that the allow-list does not name."""


class ConnectFailed(HttpError):
    """No connection, or it closed or reset before any byte of the answer."""


class Truncated(HttpError):
    """The connection ended before the body did."""


class Malformed(HttpError):
    """An answer that is not HTTP/1.x as framed: bad head, bad chunks, bytes past the end."""


class TooManyRedirects(HttpError):
    pass


class RequestTimeout(HttpError, TimeoutError):
    pass


class Target:
    """A parsed URL: where to connect and what to send (the request's head; `fixed_headers`
    are the header lines after Host, ending with the empty line)."""

    __slots__ = ("url", "scheme", "host", "port", "key", "request", "host_header")

    def __init__(self, url: str, fixed_headers: bytes, method: str = "GET") -> None:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise BadUrl(f"bad URL {url[:100]!r}: {e}") from None
        scheme = parts.scheme.lower()
        host = parts.hostname
        if scheme not in ("http", "https") or not host:
            raise BadUrl(f"not an http(s) URL: {url[:100]!r}")
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
        default = 443 if scheme == "https" else 80
        self.port = port or default
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        if not path.isascii() or " " in path:
            path = quote(path, safe=_SAFE_URL_CHARS)
        name = f"[{host}]" if ":" in host else host
        host_header = name if self.port == default else f"{name}:{self.port}"
        self.url = url
        self.host_header = host_header  # as sent: what a signature covers
        self.scheme = scheme
        self.host = host
        self.key = (scheme, host, self.port)
        self.request = (
            f"{method} {path} HTTP/1.1\r\nHost: {host_header}\r\n".encode() + fixed_headers
        )
