"""A DigitalOcean API v2 simulator over HTTP: the part python-digitalocean uses for droplets,
tags, SSH keys, VPCs and actions, for tests and the lab.

DigitalOcean's awkward parts are kept: bearer tokens (401), `{"id", "message"}` errors (404,
422, 429), `links.pages` / `meta.total` pagination with a per_page cap, rate-limit headers and
a 429 when the hourly or per-minute budget is spent, droplets that are `new` without
addresses before they become `active`, and actions that complete later. Each droplet is a
machine of a backend: a record in memory, or a lab droplet that runs its `user_data`
(`--backend lab`, root, a running lab; see `lab.sims.digitalocean.backends`).

Run it in the foreground::

    CCMIRROR_DO_TOKEN=... python -m lab.sims.digitalocean.server --host 127.0.0.1 --port 0 \
        [--backend lab]

It prints one line, ``do_sim listening on http://HOST:PORT/v2/``, when ready, and exits 0 on
SIGTERM/SIGINT after the machines being made or removed are done. Point python-digitalocean
at it with ``DIGITALOCEAN_END_POINT=http://HOST:PORT/v2/``. Tokens come from
``$CCMIRROR_DO_TOKEN`` (comma-separated) or ``--token-file`` (one a line); they are never
printed or logged. ``/_sim/machines`` (the memory backend's records) and ``/_sim/control``
(change settings at run time) need a token too: user data may carry keys.

This module is the HTTP server and the command line; the API side is
`lab.sims.digitalocean.api`, the routes `lab.sims.digitalocean.routes`.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from lab.sims.digitalocean import catalog
from lab.sims.digitalocean.account import Settings
from lab.sims.digitalocean.api import DoSim, Limits, Request
from lab.sims.digitalocean.backends import Backend, LabBackend, MemoryBackend
from lab.sims.digitalocean.cloud import Cloud
from lab.sims.digitalocean.records import ApiError, not_found
from lab.sims.digitalocean.routes import route

READY = "do_sim listening on "
TOKEN_ENV = "CCMIRROR_DO_TOKEN"
MAX_BODY = 1024 * 1024
# A lab droplet being made when SIGTERM comes is let finish: over a minute on a busy machine.
STOP_SECONDS = 150.0
UNAUTHORIZED = "Unable to authenticate you."
RATE_LIMITED = "API Rate limit exceeded."


# ---------------------------------------------------------------------------- HTTP
class Handler(BaseHTTPRequestHandler):
    server_version = "do_sim"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    sim: DoSim  # set on the subclass made by `make_server`

    def do_GET(self) -> None:
        self.handle_api()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def handle_api(self) -> None:
        status, payload, headers = self.answer()
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        if self.sim.verbose:
            print(
                f"do_sim: {self.command} {urlsplit(self.path).path} {status}",
                file=sys.stderr,
                flush=True,
            )

    def answer(self) -> tuple[int, dict | None, dict[str, str]]:
        """(status, JSON payload or None for 204, extra headers); never raises."""
        try:
            body_bytes = self.read_body()
        except ApiError as error:
            self.close_connection = True  # what was not read cannot be skipped
            return error.status, {"id": error.error_id, "message": error.message}, {}
        token = self.sim.authorized(self.headers.get("Authorization"))
        if token is None:
            return 401, {"id": "unauthorized", "message": UNAUTHORIZED}, {}
        split = urlsplit(self.path)
        counted = not split.path.startswith("/_sim/")
        allowed, headers = self.sim.rate.take(token) if counted else (True, {})
        if not allowed:
            return 429, {"id": "too_many_requests", "message": RATE_LIMITED}, headers
        found = route(self.command, split.path)
        try:
            if found is None:
                raise not_found()
            handler, match = found
            request = Request(
                self.command,
                split.path,
                match,
                {k: v[-1] for k, v in parse_qs(split.query).items()},
                parse_body(body_bytes),
                f"http://{self.headers.get('Host') or self.server_address_text()}/v2/",
            )
            status, payload = handler(self.sim, request)
        except ApiError as error:
            status, payload = error.status, {"id": error.error_id, "message": error.message}
        return status, payload, headers

    def read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ApiError(400, "bad_request", "Content-Length is not a number") from None
        if length < 0 or length > MAX_BODY:
            raise ApiError(413, "request_entity_too_large", "the request body is too large")
        return self.rfile.read(length) if length else b""

    def server_address_text(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def log_message(self, format: str, *args: object) -> None:
        pass  # handle_api logs without the query string or any header


def parse_body(raw: bytes) -> dict:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "bad_request", "unexpected end of JSON input") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the request body must be a JSON object")
    return body


def make_server(sim: DoSim, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"sim": sim})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def read_tokens(token_file: str | None) -> list[str]:
    if token_file:
        lines = Path(token_file).read_text().splitlines()
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return [part.strip() for part in os.environ.get(TOKEN_ENV, "").split(",") if part.strip()]


def make_backend(kind: str) -> Backend:
    if kind == "lab":
        from lab.fleet import core  # the lab's droplets need root; only asked for here

        core.require_root()
        return LabBackend(core.LabConfig.from_env())
    return MemoryBackend(ipaddress.IPv4Network("10.116.0.0/20"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lab.sims.digitalocean.server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (%(default)s)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--backend",
        choices=("memory", "lab"),
        default="memory",
        help="memory: records only; lab: each droplet a lab droplet running its user_data",
    )
    parser.add_argument("--token-file", help=f"accepted tokens, one a line (else ${TOKEN_ENV})")
    parser.add_argument("--region", default="nyc3", choices=sorted(catalog.REGIONS))
    parser.add_argument("--boot-seconds", type=float, default=2.0, help="new -> active")
    parser.add_argument("--action-seconds", type=float, default=1.0, help="power actions")
    parser.add_argument("--droplet-limit", type=int, default=25)
    parser.add_argument("--rate-limit", type=int, default=5000, help="per hour; 0 lifts it")
    parser.add_argument("--burst-limit", type=int, default=250, help="per minute; 0 lifts it")
    parser.add_argument("--max-per-page", type=int, default=200)
    parser.add_argument("--verbose", action="store_true", help="log each request")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tokens = read_tokens(args.token_file)
    if not tokens:
        print(f"do_sim: no token: set ${TOKEN_ENV} or give --token-file", file=sys.stderr)
        return 2
    if args.max_per_page < 1 or args.droplet_limit < 0:
        print("do_sim: --max-per-page must be >= 1, --droplet-limit >= 0", file=sys.stderr)
        return 2
    try:
        backend = make_backend(args.backend)
    except RuntimeError as error:  # LabError: not root, bad lab settings
        print(f"do_sim: {error}", file=sys.stderr)
        return 2
    settings = Settings(args.boot_seconds, args.action_seconds, args.droplet_limit, args.region)
    limits = Limits(args.rate_limit, args.burst_limit, args.max_per_page)
    sim = DoSim(Cloud(backend, settings), tokens, limits, verbose=args.verbose)
    adopted = sim.cloud.adopt_existing()
    if adopted:
        print(f"do_sim: lists the droplets made before it: {', '.join(adopted)}", file=sys.stderr)
    server = make_server(sim, args.host, args.port)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="http", daemon=True
    )
    thread.start()
    host, port = server.server_address[:2]
    print(f"{READY}http://{host}:{port}/v2/", flush=True)
    stop.wait()
    server.shutdown()
    server.server_close()
    if not sim.cloud.wait_workers(STOP_SECONDS):
        print("do_sim: stopped with machines still being made or removed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
