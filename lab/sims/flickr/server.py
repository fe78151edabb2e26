"""A Flickr REST API simulator over HTTP, for tests, the lab and benchmarks.

Serves ``flickr.photos.search``, ``flickr.photos.licenses.getInfo`` and ``flickr.photos.getInfo``
from a deterministic
:class:`lab.sims.flickr.universe.Universe`, with Flickr's awkward parts kept on purpose: the
4,000-result cap (later pages repeat the last page within the cap), misreported totals,
string/int type quirks, ``\\/``-escaped JSON, HTTP-200 errors, API keys, a per-key rate limit
and injectable faults (5xx, codes 105/201, truncated JSON, slow answers).

Run it in the foreground::

    python -m lab.sims.flickr.server --host 127.0.0.1 --port 0 --seed 1

It prints one line, ``flickr_sim listening on http://HOST:PORT/services/rest/``, when ready and
exits 0 on SIGTERM/SIGINT. Ground truth and run-time control live under ``/_sim/`` (no key).
API keys are never logged or echoed in full.

This module is the HTTP server and the command line; the logic is `lab.sims.flickr.app`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from lab.sims.flickr.app import FlickrSim
from lab.sims.flickr.buckets import DEFAULT_START, today_midnight_utc
from lab.sims.flickr.control import DEFAULT_KEY, FAULT_KINDS, Settings
from lab.sims.flickr.faults import parse_faults
from lab.sims.flickr.oauth import Credentials, HttpRequest
from lab.sims.flickr.universe import Universe
from lab.sims.flickr.wire import Reply, parse_date, parse_int


# ---------------------------------------------------------------------------- HTTP
class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: FlickrSim) -> None:
        super().__init__(address, SimHandler)
        self.app = app


class SimHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "flickr_sim"
    sys_version = ""
    server: SimServer

    def log_message(self, format: str, *args: object) -> None:
        """No access log: request lines can carry API keys."""

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        length = parse_int(self.headers.get("Content-Length"), 0)
        self._handle(self.rfile.read(length) if length > 0 else b"")

    def _handle(self, body: bytes) -> None:
        app = self.server.app
        url = urlsplit(self.path)
        query = _flat(parse_qs(url.query, keep_blank_values=True))
        text = body.decode("utf-8", "replace")
        try:
            if url.path in ("/services/rest/", "/services/rest"):
                if self.command == "POST" and body:
                    query.update(_flat(parse_qs(text, keep_blank_values=True)))
                reply = app.api(query, self._signed_part(text))
            elif url.path.startswith("/services/oauth/"):
                reply = app.oauth_endpoint(url.path, query, self._signed_part(text))
            elif url.path == "/_sim/control" and self.command == "POST":
                reply = app.control(body)
            elif url.path == "/_sim/photos" and self.command == "POST":
                reply = app.change_photos(body)
            elif url.path.startswith("/_sim/"):
                reply = app.sim_get(url.path, query)
            else:
                reply = Reply(404, b"Not Found", "text/plain; charset=utf-8")
        except Exception as exc:  # keep serving; report the bug as a 500
            reply = Reply(500, f"internal error: {type(exc).__name__}".encode(), "text/plain")
        self._send(reply)

    def _signed_part(self, body: str) -> HttpRequest:
        """The request as its signer saw it: the URL the client used (scheme and Host)."""
        uri = f"http://{self.headers.get('Host', '')}{self.path}"
        return HttpRequest(self.command, uri, dict(self.headers.items()), body)

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _flat(parsed: dict[str, list[str]]) -> dict[str, str]:
    return {k: v[-1] for k, v in parsed.items()}


# ---------------------------------------------------------------------------- CLI
def _day(text: str) -> int:
    value = parse_date(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD) or unix time: {text!r}")
    return value


def _fault_list(text: str) -> tuple[str, ...]:
    try:
        return parse_faults(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("--fault-rate must be in [0, 1]")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a share must be in [0, 1]")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lab.sims.flickr.server", description=__doc__.split("\n")[0]
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", type=_day, default=DEFAULT_START, help="YYYY-MM-DD (UTC)")
    p.add_argument(
        "--end",
        type=_day,
        default=None,
        help="YYYY-MM-DD: the universe ends at 00:00:00 UTC that day (default today)",
    )
    p.add_argument("--density", type=float, default=40.0, help="mean photos per 10 minutes")
    p.add_argument("--hot-window-every", type=int, default=2016, help="buckets; 0 = none")
    p.add_argument("--hot-second-every", type=int, default=20160, help="buckets; 0 = none")
    p.add_argument("--originals-disallowed-fraction", type=float, default=0.25)
    p.add_argument("--new-license", action="store_true", help="add license 17 (CC BY 5.0)")
    p.add_argument("--image-base", default="https://live.staticflickr.com")
    p.add_argument("--keys", default=DEFAULT_KEY, help="accepted API keys, comma-separated")
    p.add_argument(
        "--credentials",
        type=Path,
        help="JSON file (0600) of consumer secrets and access tokens for signed calls"
        " (lab/sims/flickr/oauth.py)",
    )
    p.add_argument("--moderate-share", type=_share, default=0.0, help="photos of safety level 2")
    p.add_argument("--restricted-share", type=_share, default=0.0, help="photos of safety level 3")
    p.add_argument("--rate-limit", type=int, default=3600, help="calls/hour/key; 0 = unlimited")
    p.add_argument("--fault-rate", type=_rate, default=0.0)
    p.add_argument(
        "--faults",
        type=_fault_list,
        default=FAULT_KINDS,
        help="comma list of " + ",".join(FAULT_KINDS),
    )
    p.add_argument("--slow-seconds", type=float, default=5.0)
    p.add_argument("--fault-seed", type=int, default=0)
    p.add_argument(
        "--verbose",
        action="store_true",
        help="log method, status and duration of each API call to stderr",
    )
    return p


def make_app(args: argparse.Namespace) -> FlickrSim:
    universe = Universe(
        seed=args.seed,
        start=args.start,
        end=today_midnight_utc() if args.end is None else args.end,
        density=args.density,
        hot_window_every=args.hot_window_every,
        hot_second_every=args.hot_second_every,
        originals_disallowed_fraction=args.originals_disallowed_fraction,
        new_license=args.new_license,
        image_base=args.image_base,
        moderate_share=args.moderate_share,
        restricted_share=args.restricted_share,
    )
    keys = frozenset(k.strip() for k in args.keys.split(",") if k.strip())
    settings = Settings(
        keys=keys,
        rate_limit=max(0, args.rate_limit),
        fault_rate=args.fault_rate,
        faults=tuple(args.faults),
        slow_seconds=args.slow_seconds,
    )
    credentials = Credentials.load(args.credentials) if args.credentials else None
    return FlickrSim(
        universe,
        settings,
        fault_seed=args.fault_seed,
        verbose=args.verbose,
        credentials=credentials,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    server = SimServer((args.host, args.port), make_app(args))
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="flickr_sim", daemon=True
    )
    thread.start()
    host, port = server.server_address[:2]
    print(f"flickr_sim listening on http://{host}:{port}/services/rest/", flush=True)
    while not stop.wait(0.2):
        pass
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
