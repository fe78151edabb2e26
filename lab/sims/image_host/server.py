"""An image host simulator: deterministic JPEGs at Flickr-shaped URLs, and every fault we classify.

Serves a small valid JPEG for any path ending in an image name, e.g.
``/65535/12345_abcdef_b.jpg``: the photo id is the file name's leading digits, and the bytes
(hence the sha256) depend on it. ``/photo_unavailable.png`` is Flickr's "photo unavailable"
placeholder. Faults are chosen per photo id, either in the URL (``?fault=MODE``) or at run
time through ``POST /_img/faults {"faults": {"<photo id>": "MODE" | {"mode": M, "times": N}}}``
(``times``: only the first N requests of that photo fail, later ones are served). Modes:

    html            200 text/html page              wrong_type   JPEG bytes as application/json
    html_as_jpeg    an HTML page labelled image/jpeg not_image    random bytes as image/jpeg
    truncated       announces N bytes, sends N/2, drops the connection
    wrong_length    announces fewer bytes than it sends
    404 410 403 500 that status (403: a private photo)  429 503  that status + Retry-After
    403_throttle    403 + Retry-After (a CDN throttling with 403)
    placeholder     302 to /photo_unavailable.png    placeholder_bytes  its bytes at this URL
    huge            Content-Length 3 GB, then a trickle of zeros
    endless         chunked, no length, never ends   loop         redirects to itself forever
    drip            one byte per --drip-interval     reset        a TCP reset, no answer
    slow            waits --slow-delay, then serves  png gif webp  that format at a .jpg URL

``POST /_img/latency {"seconds": S}`` delays every answer by S seconds from then on (a far
image server; the lab's e2e tests stretch a download over their faults with it).
``GET /_img/stats`` reports requests per photo id and the most requests in flight at once, per
Host header and overall, so tests can check a fetcher's concurrency limits; ``POST
/_img/reset`` clears faults and stats. Run it in the foreground::

    python -m lab.sims.image_host.server --host 127.0.0.1 --port 0

It prints ``image_host listening on http://HOST:PORT`` when ready; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import zlib
from collections import Counter
from dataclasses import dataclass, field

import requests
from aiohttp import web

from lab import CHECKOUT
from lab.processes import child

READY = "image_host listening on "
PLACEHOLDER_PATH = "/photo_unavailable.png"
HUGE_LENGTH = 3 * 1024**3
_PHOTO_ID = re.compile(r"^(\d+)")

# A complete 8x8 grey baseline JPEG: quantisation table of ones, one-symbol Huffman tables
# (DC category 0, AC end-of-block), so the single block's scan is two bits. Padding goes into
# comment (COM) segments, which every decoder skips, to reach the wanted size.
_JPEG_HEAD = bytes.fromhex(
    "ffd8"  # SOI
    "ffdb0043"
    + "00"
    + "01" * 64  # DQT: table 0, all ones
    + "ffc0000b080008000801011100"  # SOF0: 8 bit, 8x8, one component, table 0
    + "ffc4001400"
    + "01"
    + "00" * 15
    + "00"  # DHT: DC table 0, one code -> category 0
    + "ffc4001410"
    + "01"
    + "00" * 15
    + "00"  # DHT: AC table 0, one code -> EOB
)
_JPEG_SCAN = bytes.fromhex("ffda0008010100003f00" + "3f" + "ffd9")  # SOS, bits 00 + pad, EOI
_COM_MAX = 65533  # payload bytes per COM segment (length field counts itself)


def jpeg_bytes(photo_id: int, size: int = 4096) -> bytes:
    """A valid JPEG of about `size` bytes (at least ~170) whose bytes depend on `photo_id`."""
    padding = max(size - len(_JPEG_HEAD) - len(_JPEG_SCAN), 0)
    filler = random.Random(photo_id).randbytes(padding)
    segments = [_JPEG_HEAD]
    for start in range(0, max(padding, 1), _COM_MAX):
        chunk = filler[start : start + _COM_MAX]
        segments.append(b"\xff\xfe" + struct.pack(">H", len(chunk) + 2) + chunk)
    segments.append(_JPEG_SCAN)
    return b"".join(segments)


def _png(text: bytes) -> bytes:
    """A 1x1 grey PNG carrying `text` in a tEXt chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"tEXt", b"Comment\x00" + text)
        + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
        + chunk(b"IEND", b"")
    )


def placeholder_png() -> bytes:
    """The lab's "photo unavailable" placeholder; downloader.fetch knows its sha256."""
    return _png(b"ccmirror lab: photo unavailable")


def png_bytes(photo_id: int) -> bytes:
    return _png(f"photo {photo_id}".encode())


def gif_bytes(photo_id: int) -> bytes:
    """A 1x1 GIF89a with the photo id in a comment extension."""
    comment = f"photo {photo_id}".encode()
    return (
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
        + b"\x21\xfe"
        + bytes([len(comment)])
        + comment
        + b"\x00"
        + b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b"
    )


def webp_bytes(photo_id: int) -> bytes:
    """A RIFF/WEBP container (lossless header only): enough for magic-byte checks."""
    # Flickr's photo ids outgrew 32 bits long ago: eight bytes of the id.
    payload = (
        b"VP8L" + struct.pack("<I", 12) + b"\x2f\x00\x00\x00\x00" + photo_id.to_bytes(8, "big")
    )
    payload += b"\x00"  # chunks are padded to even length
    return b"RIFF" + struct.pack("<I", 4 + len(payload)) + b"WEBP" + payload


@dataclass
class Fault:
    mode: str
    times: int | None = None  # None: every request


MODES = frozenset(
    [
        "html",
        "html_as_jpeg",
        "wrong_type",
        "not_image",
        "truncated",
        "wrong_length",
        "403",
        "403_throttle",
        "404",
        "410",
        "429",
        "500",
        "503",
        "placeholder",
        "placeholder_bytes",
        "huge",
        "endless",
        "loop",
        "drip",
        "reset",
        "slow",
        "png",
        "gif",
        "webp",
    ]
)


@dataclass
class HostState:
    image_size: int
    retry_after: int
    drip_interval: float
    slow_delay: float
    faults: dict[int, Fault] = field(default_factory=dict)
    latency: float = 0.0  # seconds before every answer
    requests: Counter = field(default_factory=Counter)
    in_flight: Counter = field(default_factory=Counter)
    max_in_flight: Counter = field(default_factory=Counter)
    total: int = 0

    def fault_for(self, photo_id: int, query_mode: str | None) -> str | None:
        if query_mode:
            return query_mode
        fault = self.faults.get(photo_id)
        if fault is None:
            return None
        if fault.times is not None:
            if fault.times <= 0:
                return None
            fault.times -= 1
        return fault.mode

    def enter(self, host: str) -> None:
        self.total += 1
        for key in (host, "*"):
            self.in_flight[key] += 1
            self.max_in_flight[key] = max(self.max_in_flight[key], self.in_flight[key])

    def leave(self, host: str) -> None:
        for key in (host, "*"):
            self.in_flight[key] -= 1


def photo_id_of(path: str) -> int:
    """The leading digits of the file name, or a stable number made from the path."""
    name = path.rsplit("/", 1)[-1]
    match = _PHOTO_ID.match(name)
    return int(match.group(1)) if match else zlib.crc32(path.encode())


class ImageHost:
    def __init__(self, state: HostState) -> None:
        self.state = state

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/_img/stats", self.stats)
        app.router.add_post("/_img/faults", self.set_faults)
        app.router.add_post("/_img/reset", self.reset)
        app.router.add_post("/_img/latency", self.set_latency)
        app.router.add_get(PLACEHOLDER_PATH, self.placeholder)
        app.router.add_get("/{tail:.*}", self.image)
        return app

    async def stats(self, request: web.Request) -> web.Response:
        s = self.state
        return web.json_response(
            {
                "total": s.total,
                "requests": {str(k): v for k, v in s.requests.items()},
                "max_in_flight": dict(s.max_in_flight),
            }
        )

    async def set_faults(self, request: web.Request) -> web.Response:
        body = await request.json()
        for key, spec in body.get("faults", {}).items():
            fault = Fault(spec) if isinstance(spec, str) else Fault(spec["mode"], spec.get("times"))
            if fault.mode not in MODES:
                return web.json_response({"error": f"unknown mode {fault.mode!r}"}, status=400)
            self.state.faults[int(key)] = fault
        return web.json_response({"faults": len(self.state.faults)})

    async def set_latency(self, request: web.Request) -> web.Response:
        body = await request.json()
        seconds = body.get("seconds") if isinstance(body, dict) else None
        if not isinstance(seconds, int | float) or not 0 <= seconds <= 60:
            return web.json_response({"error": "seconds: a number from 0 to 60"}, status=400)
        self.state.latency = float(seconds)
        return web.json_response({"seconds": self.state.latency})

    async def reset(self, request: web.Request) -> web.Response:
        s = self.state
        s.faults.clear()
        s.requests.clear()
        s.max_in_flight.clear()
        s.total = 0
        return web.json_response({"ok": True})

    async def placeholder(self, request: web.Request) -> web.Response:
        return web.Response(body=placeholder_png(), content_type="image/png")

    async def image(self, request: web.Request) -> web.StreamResponse:
        host = request.host
        photo_id = photo_id_of(request.path)
        self.state.requests[photo_id] += 1
        self.state.enter(host)
        try:
            if self.state.latency:
                await asyncio.sleep(self.state.latency)
            mode = self.state.fault_for(photo_id, request.query.get("fault"))
            return await self.serve(request, photo_id, mode)
        finally:
            self.state.leave(host)

    async def serve(
        self, request: web.Request, photo_id: int, mode: str | None
    ) -> web.StreamResponse:
        s = self.state
        if mode is None or mode == "slow":
            if mode == "slow":
                await asyncio.sleep(s.slow_delay)
            return web.Response(body=jpeg_bytes(photo_id, s.image_size), content_type="image/jpeg")
        if mode in ("403", "404", "410", "500"):
            return web.Response(status=int(mode), text=f"error {mode}\n")
        if mode in ("429", "503", "403_throttle"):
            headers = {"Retry-After": str(s.retry_after)}
            return web.Response(status=int(mode[:3]), text="slow down\n", headers=headers)
        simple = self.simple_body(photo_id, mode)
        if simple is not None:
            body, content_type = simple
            return web.Response(body=body, content_type=content_type)
        if mode == "placeholder":
            raise web.HTTPFound(PLACEHOLDER_PATH)
        if mode == "loop":
            hop = int(request.query.get("hop", "0")) + 1
            raise web.HTTPFound(request.rel_url.update_query(hop=hop))
        return await self.misbehave(request, photo_id, mode)

    def simple_body(self, photo_id: int, mode: str) -> tuple[bytes, str] | None:
        html = b"<!DOCTYPE html><html><body>Sorry, this page is not available.</body></html>"
        # Built only for the mode asked: a request for one photo costs one body.
        bodies = {
            "html": lambda: (html, "text/html"),
            "html_as_jpeg": lambda: (html, "image/jpeg"),
            "wrong_type": lambda: (jpeg_bytes(photo_id, self.state.image_size), "application/json"),
            "not_image": lambda: (random.Random(photo_id).randbytes(2048), "image/jpeg"),
            "placeholder_bytes": lambda: (placeholder_png(), "image/png"),
            "png": lambda: (png_bytes(photo_id), "image/png"),
            "gif": lambda: (gif_bytes(photo_id), "image/gif"),
            "webp": lambda: (webp_bytes(photo_id), "image/webp"),
        }
        return bodies[mode]() if mode in bodies else None

    async def misbehave(self, request: web.Request, photo_id: int, mode: str) -> web.StreamResponse:
        """The faults that need the connection itself: short, long, endless or reset bodies."""
        transport = request.transport
        body = jpeg_bytes(photo_id, self.state.image_size)
        if mode == "reset" or transport is None:
            _reset(transport)
            return web.Response()  # never sent: the connection is gone
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        if mode == "truncated":
            response.content_length = len(body)
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
            await asyncio.sleep(0.05)
            _reset(transport)
        elif mode == "wrong_length":
            # Announce less than the body: the surplus reaches the client in the same write.
            response.content_length = len(body) - 100
            await response.prepare(request)
            transport.write(body)
            await asyncio.sleep(0.05)
            transport.close()
        elif mode in ("huge", "endless"):
            if mode == "huge":
                response.content_length = HUGE_LENGTH
            else:
                response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(body[:4])
            while not transport.is_closing():
                await response.write(b"\x00" * 65536)
                await asyncio.sleep(0.001 if mode == "endless" else 0.05)
        elif mode == "drip":
            response.content_length = len(body)
            await response.prepare(request)
            for i in range(len(body)):
                if transport.is_closing():
                    break
                await response.write(body[i : i + 1])
                await asyncio.sleep(self.state.drip_interval)
        return response


def _reset(transport: asyncio.BaseTransport | None) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed or hostile server would."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def serve(args: argparse.Namespace) -> None:
    state = HostState(args.image_size, args.retry_after, args.drip_interval, args.slow_delay)
    runner = web.AppRunner(ImageHost(state).app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"{READY}http://{args.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=4096, help="bytes per JPEG")
    parser.add_argument("--retry-after", type=int, default=1, help="seconds, for 429 and 503")
    parser.add_argument("--drip-interval", type=float, default=0.5, help="seconds per byte")
    parser.add_argument("--slow-delay", type=float, default=0.2, help="seconds, mode `slow`")
    args = parser.parse_args(argv)
    if not private_address(args.host):
        parser.error("the image host listens on loopback or a lab's private address only")
    asyncio.run(serve(args))
    return 0


def private_address(host: str) -> bool:
    """Loopback, or one private address (the lab's bridge); never every interface."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or (address.is_private and not address.is_unspecified)


# ---------------------------------------------------------------------- as a child process
@dataclass
class RunningImageHost:
    process: subprocess.Popen
    base_url: str  # http://127.0.0.1:PORT

    def url(self, photo_id: int, size: str = "b", fault: str | None = None) -> str:
        query = f"?fault={fault}" if fault else ""
        return f"{self.base_url}/65535/{photo_id}_0123456789_{size}.jpg{query}"

    def faults(self, faults: dict[int, str | dict]) -> None:
        payload = {"faults": {str(k): v for k, v in faults.items()}}
        requests.post(self.base_url + "/_img/faults", json=payload, timeout=10).raise_for_status()

    def reset(self) -> None:
        requests.post(self.base_url + "/_img/reset", timeout=10).raise_for_status()

    def stats(self) -> dict:
        response = requests.get(self.base_url + "/_img/stats", timeout=10)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        child.stop(self.process)


def spawn(*args: str, timeout: float = 30.0) -> RunningImageHost:
    """Start `python -m lab.sims.image_host.server` on an ephemeral loopback port; `args`
    add options."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab.sims.image_host.server",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            *args,
        ],
        cwd=CHECKOUT,
        stdout=subprocess.PIPE,
        text=True,
    )
    return RunningImageHost(process, child.ready_line(process, READY, "image_host", timeout))


if __name__ == "__main__":
    sys.exit(main())
