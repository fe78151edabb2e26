"""`harvester serve`: the download queue over HTTP, for the downloaders on the private network.

FastAPI under uvicorn: the request and response models are the OpenAPI description
(`/openapi.json`), and malformed input is refused by validation with a 4xx that says what is
wrong before any handler runs. Handlers are plain functions run in uvicorn's thread pool,
each borrowing a MariaDB connection from a small pool; the queue logic is in
`harvester.queue.leases`.

    POST /v1/leases                      lease up to N photos
    POST /v1/leases/{id}/complete        report stored/failed photos of a lease
    POST /v1/leases/{id}/extend          keep a lease alive
    POST /v1/leases/{id}/release         give photos back unreported
    GET  /v1/status, /metrics, /         counts, Prometheus metrics, a page for people

Every `/v1/leases` call needs `Authorization: Bearer TOKEN` (one token per worker); the
status, metrics and page need one too except from the addresses `queue.status_allow` names.
`harvester.queue.guard` checks both, and the body's size, before any body is read.

Over 500 lines, one module: the request and response models and their handlers are, together,
the API's description (`/openapi.json`); the queue's logic is elsewhere.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import pymysql
import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from harvester.config import QueueSettings, Settings
from harvester.db import ConnectionPool, DatabaseError
from harvester.queue import leases as dq
from harvester.queue.guard import WORKER_KEY, RequestGuard, body_limit, parse_networks
from harvester.queue.maintenance import DEFAULT_RETRY_AFTER, Maintenance, get_maintenance
from harvester.queue.metrics import QueueMetrics
from harvester.queue.page import render_status_page
from harvester.queue.status import CachedStatus, queue_status
from harvester.queue.tokens import TokenError, TokenStore

log = logging.getLogger("harvester.queue.service")
API_VERSION = "v1"
MAX_ID = 2**63 - 1
MD5_HEX = re.compile(r"[0-9a-f]{32}")
EMPTY_WAIT = 30  # seconds a worker is told to wait when nothing is pending
DATABASE_GONE = (pymysql.err.OperationalError, pymysql.err.InterfaceError, DatabaseError)


def _encodable(text: str) -> str:
    """Refuse text that is not valid Unicode (lone surrogates from a JSON escape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid UTF-8 (no lone surrogates)") from None
    return text


Text = Annotated[str, AfterValidator(_encodable)]
ImageId = Annotated[int, Field(ge=1, le=MAX_ID, description="catalog id (`id` of an item)")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no "1" for 1, no false for 0


class LeaseRequest(Strict):
    max_items: int = Field(500, ge=1, description="at most this many photos")
    lease_seconds: int | None = Field(
        None, ge=1, description="how long the lease lives (the service's default if absent)"
    )


class Item(BaseModel):
    id: int = Field(description="catalog id: name it in reports")
    photo_id: int
    image_url: str
    image_size: str = Field(description="Flickr size letter of image_url ('o' original)")
    fallback_url: str | None = Field(description="a smaller size if the original is refused")
    license_id: int
    license_name: str | None
    license_url: str | None
    owner: str = Field(description="owner NSID")
    owner_name: str
    title: str
    page_url: str
    uploaded_at: int = Field(description="unix seconds")
    width: int | None
    height: int | None


class LeaseResponse(BaseModel):
    lease_id: int | None = Field(description="null when nothing was leased")
    expires_at: str | None = Field(description="UTC, ISO 8601")
    lease_seconds: int | None
    maintenance: bool
    retry_after: int | None = Field(description="seconds to wait when no items came")
    items: list[Item]


class StoredReport(Strict):
    id: ImageId
    result: Literal["stored"]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the bytes")
    bytes: int = Field(ge=0, le=2**53)
    path: Text = Field(min_length=1, max_length=1024, description="where storage keeps it")
    md5: str | None = Field(None, description="hex MD5 of the bytes (the S3 audit compares it)")

    @field_validator("md5")
    @classmethod
    def _md5_hex(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A validator rather than a pattern, so that the 422 names the photo, not an index.
        if value is not None and not MD5_HEX.fullmatch(value):
            raise ValueError(f"photo {info.data.get('id')}: md5 must be 32 lowercase hex digits")
        return value


class FailedReport(Strict):
    id: ImageId
    result: Literal["gone", "retry", "bad"] = Field(
        description="gone: 404/410 or photo unavailable (final); retry: 5xx, timeout, 429;"
        " bad: not an image or too large (final)"
    )
    error: Text = Field("", max_length=1000)


Report = Annotated[StoredReport | FailedReport, Field(discriminator="result")]


class CompleteRequest(Strict):
    items: list[Report] = Field(max_length=10_000)


class CompleteResponse(BaseModel):
    lease_id: int
    stored: list[int]
    already_stored: list[int]
    requeued: list[int]
    failed: list[int]
    gone: list[int]
    ignored: list[int] = Field(description="failures of photos this lease no longer holds")
    taken_down: list[int] = Field([], description="photos taken down meanwhile: they stay so")


class ExtendRequest(Strict):
    seconds: int | None = Field(None, ge=1, description="new life from now")


class ExtendResponse(BaseModel):
    lease_id: int
    expires_at: str


class ReleaseRequest(Strict):
    items: list[ImageId] | None = Field(None, max_length=10_000, description="all if absent")


class ReleaseResponse(BaseModel):
    lease_id: int
    released: int


class Problem(BaseModel):
    detail: str


LeaseId = Annotated[int, Field(ge=1, le=MAX_ID)]
PROBLEMS = {
    400: {"model": Problem, "description": "photos named twice, or not of the lease"},
    401: {"model": Problem, "description": "no or unknown bearer token"},
    403: {"model": Problem, "description": "the lease belongs to another worker"},
    404: {"model": Problem, "description": "no such lease"},
    409: {"model": Problem, "description": "the lease lapsed (extend)"},
    413: {"model": Problem, "description": "the body is over queue.max_body_bytes"},
    503: {"model": Problem, "description": "the database is unavailable; retry"},
}
LEASE_PROBLEMS = {
    **PROBLEMS,
    429: {
        "model": Problem,
        "description": "the worker holds queue.max_open_leases open leases, or another lease"
        " request of it is in flight: wait Retry-After seconds, or report a lease first",
    },
}
STATUS_PROBLEMS = {
    403: {"model": Problem, "description": "not from an allowed address, and no worker token"},
    503: PROBLEMS[503],
}


def utc_now() -> datetime:
    """Naive UTC, as the DATETIME columns hold it."""
    return datetime.now(UTC).replace(tzinfo=None)


class QueueService:
    """Everything a request needs: the settings, connections, tokens, cached switches."""

    def __init__(self, settings: QueueSettings, db_url: str) -> None:
        self.settings = settings
        self.pool = ConnectionPool(
            db_url,
            settings.db_connections,
            # Locking reads lock only the rows they return: no gap locks between leasers.
            session_sql=("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", *dq.SESSION_SQL),
        )
        self.tokens = TokenStore(Path(settings.tokens_file))
        try:
            self.status_allow = parse_networks(settings.status_allow)
        except ValueError as exc:
            raise QueueStartError(str(exc)) from None
        self.max_body = body_limit(settings.max_body_bytes, settings.max_items)
        self._leasing: set[str] = set()  # workers with a lease request in flight
        self._leasing_lock = threading.Lock()
        self.metrics = QueueMetrics(self.status)
        self._maintenance = (Maintenance(False, DEFAULT_RETRY_AFTER), -1e9)
        self._status = CachedStatus(self._compute_status)
        self._leased_up_to: dict[int, int] = {}  # per priority level
        self._rescanned = 0.0
        self.backoff = dq.Backoff(
            settings.retry_backoff_seconds, settings.retry_backoff_max_seconds
        )
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    # --- switches and reference data, cached ---

    def maintenance(self) -> Maintenance:
        value, taken = self._maintenance
        now = time.monotonic()
        if now - taken >= 1.0:  # one read a second, shared by all requests
            with self.pool.connection() as conn:
                value = get_maintenance(conn)
            self._maintenance = (value, now)
        return value

    def status(self) -> dict:
        return self._status.get()

    # --- where the next lease starts looking ---

    def scan_start(self) -> dict[int, int]:
        """The highest catalog id leased lately of each priority level, or none every
        `rescan_seconds`: photos that came back to the queue below the marks (retries,
        lapsed leases) wait at most that long."""
        now = time.monotonic()
        if now - self._rescanned >= self.settings.rescan_seconds:
            self._rescanned = now
            return {}
        return dict(self._leased_up_to)

    def leased_up_to(self, leased: dq.Lease | None) -> None:
        if leased is not None:
            for level, end in leased.ends.items():
                self._leased_up_to[level] = max(self._leased_up_to.get(level, 0), end)

    @contextmanager
    def one_lease_request(self, worker: str) -> Iterator[None]:
        """One lease request per worker at a time, refused rather than queued: the open-lease
        cap is counted in the database, and two requests counting at once would both pass.
        (A downloader leases one batch after the other; it never overlaps its own.)"""
        with self._leasing_lock:
            if worker in self._leasing:
                raise dq.TooManyLeases(
                    f"another lease request of worker {worker} is in flight; one at a time",
                    retry_after=1,
                )
            self._leasing.add(worker)
        try:
            yield
        finally:
            with self._leasing_lock:
                self._leasing.discard(worker)

    def _compute_status(self) -> dict:
        maintenance = self.maintenance().on  # before borrowing: it may borrow a connection too
        with self.pool.connection() as conn:
            return queue_status(conn, utc_now(), self.tokens.workers(), maintenance)

    # --- the reaper: lapsed leases back to the queue ---

    def start_reaper(self) -> None:
        self._reaper = threading.Thread(target=self._reap_loop, name="reaper", daemon=True)
        self._reaper.start()

    def stop(self) -> None:
        self._stop.set()
        if self._reaper is not None:
            self._reaper.join(timeout=10)
        self.pool.close()

    def reap_once(self) -> tuple[int, int]:
        expired = requeued = 0
        with self.pool.connection() as conn:
            while True:
                reaped = dq.reap(conn, utc_now())
                expired, requeued = expired + reaped.leases, requeued + reaped.photos
                if reaped.leases + reaped.waits == 0:
                    break
            retention = timedelta(days=self.settings.lease_retention_days)
            dq.prune_leases(conn, utc_now() - retention)
        self.metrics.reaper_ran(time.time())
        if expired:
            log.info("expired %d leases: %d photos back in the queue", expired, requeued)
            self.metrics.expired(expired, requeued)
        return expired, requeued

    def _reap_loop(self) -> None:
        while not self._stop.wait(self.settings.reap_interval):
            try:
                self.reap_once()
            except DATABASE_GONE as exc:
                log.warning("reaper: database unavailable (%s); trying again", exc)


_bearer = HTTPBearer(auto_error=False)


async def _worker_of(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The worker whose bearer token `RequestGuard` found (the bearer dependency documents
    the scheme in the OpenAPI description). Async: FastAPI would run a plain function in the
    thread pool, a second thread hop for every request."""
    worker = request.scope.get(WORKER_KEY)
    if worker is None:  # the guard refuses such a request first; never trust its absence
        raise Unauthorized
    return worker


Worker = Annotated[str, Depends(_worker_of)]


def create_app(service: QueueService) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start_reaper()
        yield
        service.stop()

    app = FastAPI(
        title="ccmirror download queue",
        version=API_VERSION,
        description=__doc__.split("\n\n")[1],
        lifespan=lifespan,
    )

    app.state.service = service
    # Outside every route: tokens, status addresses and body size, before a body is read.
    app.add_middleware(
        RequestGuard,
        tokens=service.tokens,
        status_allow=service.status_allow,
        max_body=service.max_body,
    )

    @app.exception_handler(Unauthorized)
    def _unauthorized(_: Request, __: Exception) -> JSONResponse:
        return JSONResponse(
            {"detail": "a worker's bearer token is required (Authorization: Bearer TOKEN)"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(dq.QueueError)
    def _refused(_: Request, exc: dq.QueueError) -> JSONResponse:
        retry_after = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)

    for gone in DATABASE_GONE:

        @app.exception_handler(gone)
        def _database_gone(_: Request, exc: Exception) -> JSONResponse:
            log.warning("database unavailable: %s", exc)
            return JSONResponse(
                {"detail": "the database is unavailable; try again shortly"},
                status_code=503,
                headers={"Retry-After": "5"},
            )

    @app.post("/v1/leases", response_model=LeaseResponse, responses=LEASE_PROBLEMS)
    def lease(worker: Worker, body: LeaseRequest | None = None) -> Response:
        body = body or LeaseRequest()
        maintenance = service.maintenance()
        if maintenance.on:
            service.metrics.maintenance_refusal()
            return _lease_json(None, None, maintenance, True)
        settings = service.settings
        seconds = min(body.lease_seconds or settings.lease_seconds, settings.max_lease_seconds)
        count = min(body.max_items, settings.max_items)
        cap = settings.max_open_leases
        with service.one_lease_request(worker), service.pool.connection() as conn:
            after = service.scan_start()
            leased = dq.lease(conn, worker, count, seconds, utc_now(), after, cap)
            if leased is None and any(after.values()):  # nothing past the marks: from the start
                leased = dq.lease(conn, worker, count, seconds, utc_now(), max_open=cap)
        service.leased_up_to(leased)
        service.metrics.leased(worker, len(leased.item_ids) if leased else 0)
        return _lease_json(leased, seconds, maintenance, False)

    @app.post(
        "/v1/leases/{lease_id}/complete",
        response_model=CompleteResponse,
        responses=PROBLEMS,
    )
    def complete(lease_id: LeaseId, body: CompleteRequest, worker: Worker) -> Response:
        # The validated models have the fields of a `dq.Report`; no copy is needed.
        with service.pool.connection() as conn:
            outcome = dq.complete(
                conn,
                worker,
                lease_id,
                body.items,
                service.settings.max_attempts,
                utc_now(),
                service.backoff,
            )
        service.metrics.reported(worker, outcome)
        # Lists of ints, encoded as they are: through the response model, 500 ids would be
        # validated again before being encoded.
        return Response(json.dumps(outcome.as_dict()), media_type="application/json")

    @app.post(
        "/v1/leases/{lease_id}/extend",
        response_model=ExtendResponse,
        responses=PROBLEMS,
    )
    def extend(lease_id: LeaseId, worker: Worker, body: ExtendRequest | None = None) -> dict:
        settings = service.settings
        seconds = min((body and body.seconds) or settings.lease_seconds, settings.max_lease_seconds)
        with service.pool.connection() as conn:
            expires = dq.extend(conn, worker, lease_id, seconds, utc_now())
        return {"lease_id": lease_id, "expires_at": expires.isoformat() + "Z"}

    @app.post("/v1/leases/{lease_id}/release", response_model=ReleaseResponse, responses=PROBLEMS)
    def release(lease_id: LeaseId, worker: Worker, body: ReleaseRequest | None = None) -> dict:
        items = body.items if body else None
        with service.pool.connection() as conn:
            released = dq.release(conn, worker, lease_id, items, utc_now())
        return {"lease_id": lease_id, "released": released}

    @app.get("/v1/status", responses=STATUS_PROBLEMS)
    def status() -> dict:
        return service.status()

    @app.get("/metrics", response_class=Response, responses=STATUS_PROBLEMS)
    def metrics() -> Response:
        body, content_type = service.metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/", response_class=HTMLResponse, responses=STATUS_PROBLEMS)
    def page() -> HTMLResponse:
        return HTMLResponse(render_status_page(service.status()))

    return app


class Unauthorized(Exception):
    """No bearer token, or one that names no worker."""


def _lease_json(
    leased: dq.Lease | None, seconds: int | None, maintenance: Maintenance, refused: bool
) -> Response:
    """The lease answer. The items are MariaDB's JSON, spliced in as they came: 500 items
    through the response model would cost more than the database work. With no items,
    Retry-After says when to ask again."""
    head = {
        "lease_id": leased.id if leased else None,
        "expires_at": leased.expires_at.isoformat() + "Z" if leased else None,
        "lease_seconds": seconds if leased else None,
        "maintenance": maintenance.on,
        "retry_after": None if leased else (maintenance.retry_after if refused else EMPTY_WAIT),
    }
    items = leased.items_json if leased else "[]"
    body = json.dumps(head)[:-1] + f', "items": {items}}}'
    headers = {} if leased else {"Retry-After": str(head["retry_after"])}
    return Response(body, media_type="application/json", headers=headers)


def serve(settings: Settings, *, verbose: bool = False) -> int:
    """Run the service in the foreground until SIGTERM or SIGINT; uvicorn finishes the
    requests in flight, then the reaper stops and the connections close."""
    try:
        service = QueueService(settings.queue, settings.db_url)
    except TokenError as exc:
        raise QueueStartError(str(exc)) from None
    config = uvicorn.Config(
        create_app(service),
        host=settings.queue.bind,
        port=settings.queue.port,
        log_level="debug" if verbose else "info",
        access_log=verbose,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=30,
        # The client address is the socket's peer: `status_allow` must not be decided by an
        # X-Forwarded-For header (uvicorn trusts it from 127.0.0.1 by default).
        proxy_headers=False,
        forwarded_allow_ips="",
    )
    log.info(
        "queue service on http://%s:%d/ (tokens from %s)",
        settings.queue.bind,
        settings.queue.port,
        settings.queue.tokens_file,
    )
    server = _ForegroundServer(config)
    server.run()
    if not server.started:
        return 1
    log.info("queue service stopped")
    return 0


class _ForegroundServer(uvicorn.Server):
    """Exits 0 after the graceful stop that SIGTERM or SIGINT starts; uvicorn itself would
    re-raise the signal afterwards, so the process would end as killed by it."""

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


class QueueStartError(RuntimeError):
    """The service cannot start; the message says why."""
