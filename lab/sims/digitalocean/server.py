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
"""

from __future__ import annotations

import argparse
import collections
import hmac
import ipaddress
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

from lab.sims.digitalocean import catalog
from lab.sims.digitalocean.account import Settings
from lab.sims.digitalocean.backends import Backend, LabBackend, MemoryBackend
from lab.sims.digitalocean.cloud import Cloud
from lab.sims.digitalocean.records import ApiError, not_found

READY = "do_sim listening on "
TOKEN_ENV = "CCMIRROR_DO_TOKEN"
DEFAULT_PER_PAGE = 20
MAX_BODY = 1024 * 1024
STOP_SECONDS = 60.0  # a lab droplet being made when SIGTERM comes is let finish
UNAUTHORIZED = "Unable to authenticate you."
RATE_LIMITED = "API Rate limit exceeded."


@dataclass
class Limits:
    """Requests per token: DigitalOcean allows 5,000 an hour and 250 a minute. 0 lifts one."""

    per_hour: int = 5000
    per_minute: int = 250
    max_per_page: int = 200
    hour_seconds: float = 3600.0


@dataclass
class RateLimiter:
    limits: Limits
    seen: dict[str, collections.deque] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, token: str) -> tuple[bool, dict[str, str]]:
        """Count one request of `token` unless a budget is spent; (allowed, headers)."""
        now = time.time()
        with self.lock:
            times = self.seen.setdefault(token, collections.deque())
            window = self.limits.hour_seconds
            while times and times[0] <= now - window:
                times.popleft()
            in_minute = sum(1 for t in times if t > now - 60)
            hourly, burst = self.limits.per_hour, self.limits.per_minute
            allowed = not (hourly and len(times) >= hourly) and not (burst and in_minute >= burst)
            if allowed:
                times.append(now)
            if not hourly:
                return allowed, {}
            reset = times[0] + window if times else now + window
            return allowed, {
                "ratelimit-limit": str(hourly),
                "ratelimit-remaining": str(max(0, hourly - len(times))),
                "ratelimit-reset": str(int(reset)),
            }


def paginate(
    items: list[dict], key: str, query: dict[str, str], url: str, max_per_page: int
) -> dict:
    """One page of `items` as DigitalOcean pages lists: per_page is capped, `links.pages`
    holds absolute first/prev/next/last URLs (only those that apply), `meta.total` all."""
    per_page = min(max(int_param(query, "per_page", DEFAULT_PER_PAGE), 1), max_per_page)
    page = max(int_param(query, "page", 1), 1)
    last = max(1, math.ceil(len(items) / per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    others = {k: v for k, v in query.items() if k not in ("page", "per_page")}

    def link(number: int) -> str:
        return f"{url}?{urlencode({'page': number, 'per_page': per_page, **others})}"

    pages = {}
    if page > 1:
        pages["first"], pages["prev"] = link(1), link(min(page - 1, last))
    if page < last:
        pages["next"], pages["last"] = link(page + 1), link(last)
    return {key: chunk, "links": {"pages": pages} if pages else {}, "meta": {"total": len(items)}}


def int_param(query: dict[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except ValueError:
        return default


@dataclass
class Request:
    method: str
    path: str
    match: re.Match
    query: dict[str, str]
    body: dict
    base_url: str  # http://host:port/v2/

    def arg(self, index: int) -> str:
        return self.match.group(index)

    def page(self, sim: DoSim, items: list[dict], key: str) -> tuple[int, dict]:
        url = self.base_url + self.path.removeprefix("/v2/")
        return 200, paginate(items, key, self.query, url, sim.limits.max_per_page)


Route = tuple[str, re.Pattern, Callable[["DoSim", Request], tuple[int, dict | None]]]


class DoSim:
    """The account, the limits and the tokens behind one server."""

    def __init__(
        self, cloud: Cloud, tokens: list[str], limits: Limits | None = None, verbose=False
    ) -> None:
        if not tokens or not all(tokens):
            raise ValueError("the simulator needs at least one non-empty token")
        self.cloud, self.tokens = cloud, tokens
        self.limits = limits or Limits()
        self.rate = RateLimiter(self.limits)
        self.verbose = verbose

    def authorized(self, header: str | None) -> str | None:
        """The token of a valid `Authorization: Bearer TOKEN`, else None."""
        if not header or not header.startswith("Bearer "):
            return None
        given = header.removeprefix("Bearer ").strip().encode()
        for token in self.tokens:
            if hmac.compare_digest(given, token.encode()):
                return token
        return None

    def control(self, body: dict) -> dict:
        """Settings changed at run time (a test shortens boot, lowers a limit...)."""
        settings, limits = self.cloud.settings, self.limits
        targets = {
            "boot_seconds": (settings, float),
            "action_seconds": (settings, float),
            "droplet_limit": (settings, int),
            "per_hour": (limits, int),
            "per_minute": (limits, int),
            "max_per_page": (limits, int),
            "hour_seconds": (limits, float),
        }
        unknown = sorted(set(body) - set(targets))
        if unknown:
            raise ApiError(422, "unprocessable_entity", f"unknown settings: {unknown}")
        try:
            values = {name: targets[name][1](value) for name, value in body.items()}
        except (TypeError, ValueError) as error:
            raise ApiError(422, "unprocessable_entity", str(error)) from None
        for name, value in values.items():
            setattr(targets[name][0], name, value)
        if body:
            self.rate.seen.clear()  # new limits start from a clean count
        return {"settings": {**vars(settings), **vars(limits)}}


# ---------------------------------------------------------------------------- routes
def r_account(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.cloud.account()


def r_regions(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return req.page(sim, [catalog.region_json(slug) for slug in catalog.REGIONS], "regions")


def r_sizes(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return req.page(sim, [catalog.size_json(size) for size in catalog.SIZES], "sizes")


def r_images(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return req.page(sim, [catalog.image_json(image) for image in catalog.IMAGES], "images")


def r_image(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    image = catalog.image_by_id_or_slug(req.arg(1))
    if image is None:
        raise not_found()
    return 200, {"image": catalog.image_json(image)}


def r_droplets(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    items = sim.cloud.list_droplets(req.query.get("tag_name"), req.query.get("name"))
    return req.page(sim, items, "droplets")


def r_create_droplets(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 202, sim.cloud.create_droplets(req.body, req.base_url)


def r_destroy_by_tag(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    sim.cloud.destroy_by_tag(req.query.get("tag_name"))
    return 204, None


def r_droplet(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.cloud.get_droplet(req.arg(1))


def r_destroy_droplet(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    sim.cloud.destroy_droplet(req.arg(1))
    return 204, None


def r_droplet_actions(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return req.page(sim, sim.cloud.list_actions(req.arg(1)), "actions")


def r_droplet_action_post(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 201, sim.cloud.droplet_action(req.arg(1), req.body)


def r_droplet_action(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.cloud.get_action(req.arg(2), droplet_id=req.arg(1))


def r_actions(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return req.page(sim, sim.cloud.list_actions(), "actions")


def r_action(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.cloud.get_action(req.arg(1))


def r_tags(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return req.page(sim, sim.cloud.list_tags(), "tags")


def r_create_tag(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 201, sim.cloud.create_tag(req.body)


def r_tag(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.cloud.get_tag(req.arg(1))


def r_delete_tag(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    sim.cloud.delete_tag(req.arg(1))
    return 204, None


def r_tag_resources(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    sim.cloud.tag_resources(req.arg(1), req.body, tag=req.method == "POST")
    return 204, None


def r_keys(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return req.page(sim, sim.cloud.list_keys(), "ssh_keys")


def r_create_key(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 201, sim.cloud.create_key(req.body)


def r_key(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.cloud.get_key(req.arg(1))


def r_rename_key(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.cloud.rename_key(req.arg(1), req.body)


def r_delete_key(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    sim.cloud.delete_key(req.arg(1))
    return 204, None


def r_vpcs(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return req.page(sim, sim.cloud.list_vpcs(), "vpcs")


def r_create_vpc(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 201, sim.cloud.create_vpc(req.body)


def r_vpc(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.cloud.get_vpc(req.arg(1))


def r_rename_vpc(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.cloud.rename_vpc(req.arg(1), req.body)


def r_delete_vpc(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    sim.cloud.delete_vpc(req.arg(1))
    return 204, None


def r_sim_machines(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    backend = sim.cloud.backend
    if not isinstance(backend, MemoryBackend):
        raise ApiError(404, "not_found", "only the memory backend keeps machine records")
    return 200, {"machines": backend.snapshot()}


def r_sim_control(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.control(req.body)


SEGMENT = r"([^/]+)"
ROUTES: list[Route] = [
    (method, re.compile(f"^{pattern}/?$"), handler)
    for method, pattern, handler in [
        ("GET", "/v2/account", r_account),
        ("GET", "/v2/regions", r_regions),
        ("GET", "/v2/sizes", r_sizes),
        ("GET", "/v2/images", r_images),
        ("GET", f"/v2/images/{SEGMENT}", r_image),
        ("GET", "/v2/droplets", r_droplets),
        ("POST", "/v2/droplets", r_create_droplets),
        ("DELETE", "/v2/droplets", r_destroy_by_tag),
        ("GET", r"/v2/droplets/(\d+)", r_droplet),
        ("DELETE", r"/v2/droplets/(\d+)", r_destroy_droplet),
        ("GET", r"/v2/droplets/(\d+)/actions", r_droplet_actions),
        ("POST", r"/v2/droplets/(\d+)/actions", r_droplet_action_post),
        ("GET", r"/v2/droplets/(\d+)/actions/(\d+)", r_droplet_action),
        ("GET", "/v2/actions", r_actions),
        ("GET", r"/v2/actions/(\d+)", r_action),
        ("GET", "/v2/tags", r_tags),
        ("POST", "/v2/tags", r_create_tag),
        ("GET", f"/v2/tags/{SEGMENT}", r_tag),
        ("DELETE", f"/v2/tags/{SEGMENT}", r_delete_tag),
        ("POST", f"/v2/tags/{SEGMENT}/resources", r_tag_resources),
        ("DELETE", f"/v2/tags/{SEGMENT}/resources", r_tag_resources),
        ("GET", "/v2/account/keys", r_keys),
        ("POST", "/v2/account/keys", r_create_key),
        ("GET", f"/v2/account/keys/{SEGMENT}", r_key),
        ("PUT", f"/v2/account/keys/{SEGMENT}", r_rename_key),
        ("DELETE", f"/v2/account/keys/{SEGMENT}", r_delete_key),
        ("GET", "/v2/vpcs", r_vpcs),
        ("POST", "/v2/vpcs", r_create_vpc),
        ("GET", f"/v2/vpcs/{SEGMENT}", r_vpc),
        ("PATCH", f"/v2/vpcs/{SEGMENT}", r_rename_vpc),
        ("PUT", f"/v2/vpcs/{SEGMENT}", r_rename_vpc),
        ("DELETE", f"/v2/vpcs/{SEGMENT}", r_delete_vpc),
        ("GET", "/_sim/machines", r_sim_machines),
        ("POST", "/_sim/control", r_sim_control),
    ]
]


def route(method: str, path: str) -> tuple[Callable, re.Match] | None:
    for route_method, pattern, handler in ROUTES:
        match = pattern.match(path)
        if match and route_method == method:
            return handler, match
    return None


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


# ---------------------------------------------------------------------------- command line
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
