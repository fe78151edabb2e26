"""Did the mirror come out exactly right? The catalog, storage and the ground truth, compared.

    truth = GroundTruth(universe.truth(lo, hi), faults={photo_id: "404", ...}, image_size=4096)
    report = check_mirror(conn, storage, truth)  # conn: the catalog (lab_catalog)
    print("\\n".join(report.summary_lines()))
    assert_mirror(conn, storage, truth)          # MirrorMismatch naming every problem

`storage` is a reader (lab/mission/storage_scan.py): the images bucket (`Bucket`, what the lab
uses: `lab_storage(config)`) or a storage root on disk (`FileTree`, or a Path: the rsync
target's, `lab_storage_root(config)`).

The ground truth is what the simulators were made to hold: the CC photo ids of the harvested
range (`lab.sims.flickr.universe.Universe.truth`, plus any other source's), and the faults the
image host was told to serve per photo id (`lab.sims.image_host.server` modes, with `times`
or not). The image host's bytes are a function of the photo id and its `--image-size`, so
every stored file's sha256 is known in advance.

Every ground-truth photo must be `stored` exactly once, or `gone`/`failed` with the class
its fault gives (the class is the queue's `last_error` prefix: `gone`, `bad`, `retry`), or
`taken_down` when the truth says it was taken down (then with no file under `images/`). A
stored photo has one `stored_images` row, one file at its layout path
(`ccmirror_common.layout`) whose sha256 and size equal the catalog's and the image host's bytes,
and a manifest line whose attribution equals the catalog's. Storage holds nothing else under
`images/` (a bucket: nothing else at all but `manifests/`, `probes/`, `catalog/`, db-1's
catalog backups, and `takedown/`, taken-down photos' objects). In a bucket, a
photo's current version has its first version's bytes (an overwrite the audit restored is
right again), and a photo whose latest version is a delete marker has no object. The problems
found are named by PROBLEMS' keys.

Run it once the queue has drained and the downloaders are idle: a push or a report in flight
shows as a problem. 10,000 stored photos of 4 KB are read, hashed and compared in 1-2 s on
2 cores from files (2026-11-23; 2.7-3.7 s on 2026-12-05), and in 39-46 s from a bucket on the
tests' SeaweedFS (two volume servers, the weed processes on the same 2 cores): the paged
listing takes 9 s, then one GET per photo, 16 at a time, at about 1.5 ms of boto3's CPU each
(the lab's 3,000 photos: about 10 s).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
import pymysql.cursors

from ccmirror_common.layout import IMAGE_EXTENSIONS, image_path
from lab.fleet.core import Droplet, LabConfig, LabError, find_droplet, load_state
from lab.fleet.lab_secrets import writer
from lab.fleet.salt_master import private_pillar
from lab.mission.bucket_scan import Bucket
from lab.mission.storage_scan import Digest, FileTree, StorageReader, StorageScan
from lab.processes.seaweedfs_s3 import IMAGES_BUCKET, S3Key, client
from lab.sims.image_host.server import gif_bytes, jpeg_bytes, png_bytes, webp_bytes

PROBLEMS = {
    "not_in_catalog": "a ground-truth photo the catalog does not hold",
    "unsettled": "a ground-truth photo neither stored nor classified (pending or withdrawn)",
    "wrong_outcome": "stored, gone or failed other than the image host's fault for it says",
    "wrong_class": "gone or failed with another class than its fault gives",
    "not_in_truth": "a photo stored that the ground truth does not have",
    "no_stored_record": "catalog state and stored_images rows disagree",
    "missing_file": "stored in the catalog, no file on storage (or a delete marker is its latest)",
    "second_copy": "more than one file for one photo on storage",
    "overwritten": "a photo object whose current version's bytes are not its first version's",
    "misplaced_file": "a file not where the layout and the catalog put it",
    "bad_checksum": "a stored file's sha256 or size differs from the catalog or the image host",
    "missing_manifest_line": "a stored photo without a manifest line on storage",
    "manifest_mismatch": "a manifest line's attribution differs from the catalog's",
    "bad_manifest_line": "a manifest line that is not a JSON object with a photo id",
    "unexpected_file": "a file on storage that is no stored photo of the catalog (nor manifest)",
}
# Fault mode -> (catalog state, class), as downloader.fetch and the queue decide them.
FAULT_OUTCOMES: dict[str, tuple[str, str | None]] = {
    # 403 is a private photo; its fallback URL (same photo id, same fault) is refused too.
    **dict.fromkeys(("403", "404", "410", "placeholder", "placeholder_bytes"), ("gone", "gone")),
    **dict.fromkeys(
        ("html", "html_as_jpeg", "wrong_type", "not_image", "wrong_length", "huge", "endless"),
        ("failed", "bad"),
    ),
    **dict.fromkeys(
        ("truncated", "500", "503", "429", "403_throttle", "loop", "drip", "reset"),
        ("failed", "retry"),
    ),
    **dict.fromkeys(("slow", "png", "gif", "webp"), ("stored", None)),
}
OTHER_FORMATS = {"png": png_bytes, "gif": gif_bytes, "webp": webp_bytes}
# The attribution a manifest line carries, by its key, and the catalog column it must equal.
ATTRIBUTION = ("license_id", "license_name", "license_url", "owner", "owner_name", "title")
MANIFEST_FIELDS = (*ATTRIBUTION, "page_url", "path")
LAB_STORAGE_ROOT = "/srv/ccmirror-storage"  # salt/storage/defaults.yaml storage:root
LAB_MARIADB_SOCKET = "/run/mysqld/mysqld.sock"  # salt/db/defaults.yaml db:socket
LAB_S3_PORT = 8333  # salt/storage/defaults.yaml storage:seaweedfs:ports:s3
LAB_S3_READERS = 16  # objects read at once (and the client's connection pool)


TAKEN_DOWN = "taken_down"
CLASSIFIED = ("gone", "failed")  # settled with the class of their failure
SETTLED = ("stored", *CLASSIFIED, TAKEN_DOWN)


class MirrorMismatch(AssertionError):
    """The mirror differs from the ground truth; the message names every kind of problem."""


@dataclass(frozen=True)
class Expected:
    """What the ground truth allows for one photo: its states, and the class of a failure."""

    states: frozenset[str]
    error_class: str | None = None
    mode: str | None = None  # the image host's fault, if any


@dataclass
class GroundTruth:
    photo_ids: Iterable[int]  # kept as a frozenset of ints
    # What the image host was told, as POST /_img/faults takes it: "MODE" or {"mode", "times"}.
    faults: Mapping[int, str | Mapping] = field(default_factory=dict)
    image_size: int = 4096  # the image host's --image-size
    # Photos taken down (`salt-run takedown.add`): `taken_down`, never stored, no object left
    # under `images/` (one stored before is under `takedown/`).
    taken_down: Iterable[int] = ()

    def __post_init__(self) -> None:
        self.photo_ids = frozenset(int(i) for i in self.photo_ids)
        self.taken_down = frozenset(int(i) for i in self.taken_down)
        self.faults = {int(k): v for k, v in self.faults.items()}
        unknown = sorted({fault_mode(spec) for spec in self.faults.values()} - set(FAULT_OUTCOMES))
        if unknown:
            raise ValueError(f"fault modes the mirror check does not know: {', '.join(unknown)}")

    def expected(self, photo_id: int) -> Expected:
        if photo_id in self.taken_down:
            return Expected(frozenset({TAKEN_DOWN}))
        spec = self.faults.get(photo_id)
        if spec is None:
            return Expected(frozenset({"stored"}))
        mode = fault_mode(spec)
        state, error_class = FAULT_OUTCOMES[mode]
        if isinstance(spec, Mapping) and spec.get("times") is not None:
            # A fault for the first N requests: whether the photo's attempts (and the fallback
            # URL) outlast it depends on the fetcher's settings; either end is right.
            return Expected(frozenset({"stored", state}), error_class, mode)
        return Expected(frozenset({state}), error_class, mode)

    def image_bytes(self, photo_id: int) -> bytes:
        """What the image host serves for this photo when it serves an image."""
        spec = self.faults.get(photo_id)
        maker = OTHER_FORMATS.get(fault_mode(spec)) if spec is not None else None
        return maker(photo_id) if maker else jpeg_bytes(photo_id, self.image_size)


def fault_mode(spec: str | Mapping) -> str:
    return spec if isinstance(spec, str) else str(spec["mode"])


@dataclass
class CatalogPhoto:
    photo_id: int
    state: str
    last_error: str | None
    attribution: dict  # MANIFEST_FIELDS -> the catalog's value (path: stored_images')
    sha256: str | None  # hex, from stored_images
    bytes: int | None
    path: str | None


@dataclass
class MirrorReport:
    truth_photos: int
    states: Counter  # catalog state of each ground-truth photo ("missing": not in it)
    stored_bytes: int  # sum of the catalog's bytes of stored photos
    files: int  # image files on storage
    manifest_lines: int
    failed_by_class: Counter  # "retry: HTTP 500", "bad: not an image" ...
    gone_by_reason: Counter
    problems: dict[str, list[str]]  # PROBLEMS key -> one line per finding
    notes: list[str]  # worth knowing, not wrong (leftover partial transfers)
    storage: str = ""  # where storage was read
    objects: int = 0  # current objects (files) on storage, manifests and probes too
    object_bytes: int = 0  # their bytes
    versions: int = 0  # object versions kept (a file tree: one per file)
    delete_markers: int = 0

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())

    def summary_lines(self, most: int = 5) -> list[str]:
        """What `make lab` prints: counts by state, bytes, failures by class, the verdict."""
        states = ", ".join(f"{state} {n:,}" for state, n in sorted(self.states.items()))
        lines = [
            f"ground truth: {self.truth_photos:,} CC photos; catalog: {states}",
            f"storage: {self.storage}: {self.objects:,} objects, {self.object_bytes / 1e6:,.1f} MB,"
            f" {self.versions:,} versions, {self.delete_markers:,} delete markers",
            f"mirror: {self.files:,} image files, {self.stored_bytes / 1e6:,.1f} MB stored,"
            f" {self.manifest_lines:,} manifest lines",
        ]
        for title, counts in (("gone", self.gone_by_reason), ("failed", self.failed_by_class)):
            if counts:
                shown = ", ".join(f"{reason} {n:,}" for reason, n in counts.most_common(most))
                lines.append(f"{title} by class: {shown}")
        lines += [f"note: {note}" for note in self.notes]
        lines.append("mirror check: OK" if self.ok else "mirror check: FAILED")
        return lines

    def problem_text(self, most: int = 10) -> str:
        """Each kind of problem with its count, meaning and first findings."""
        parts = []
        for kind, findings in self.problems.items():
            if not findings:
                continue
            parts.append(f"{kind} ({len(findings):,}): {PROBLEMS[kind]}")
            parts += [f"    {finding}" for finding in findings[:most]]
            if len(findings) > most:
                parts.append(f"    ... and {len(findings) - most:,} more")
        return "\n".join(parts)


def assert_mirror(conn, storage: StorageReader | Path, truth: GroundTruth) -> MirrorReport:
    """The report when the mirror is exactly right; MirrorMismatch naming every problem
    otherwise."""
    report = check_mirror(conn, storage, truth)
    if not report.ok:
        summary = "\n".join(report.summary_lines())
        raise MirrorMismatch(f"the mirror is not right:\n{report.problem_text()}\n{summary}")
    return report


def check_mirror(conn, storage: StorageReader | Path, truth: GroundTruth) -> MirrorReport:
    """Compare the catalog behind `conn`, `storage` (a reader, or a storage root on disk) and
    the ground truth."""
    reader = FileTree(Path(storage)) if isinstance(storage, (str, Path)) else storage
    catalog, orphans = read_catalog(conn)
    scan = reader.scan()
    problems: dict[str, list[str]] = {kind: [] for kind in PROBLEMS}
    problems["no_stored_record"] += [
        f"stored_images row for catalog id {image_id}, which the catalog lacks"
        for image_id in orphans
    ]
    check_outcomes(catalog, truth, problems)
    stored = {pid: photo for pid, photo in catalog.items() if photo.state == "stored"}
    for photo in stored.values():
        check_stored(photo, scan, problems)
    to_read = [photo for photo in stored.values() if bytes_to_check(photo, scan)]
    digests = reader.digests(photo.path for photo in to_read)
    for photo in to_read:
        check_bytes(photo, digests[photo.path], truth, problems)
    problems["unexpected_file"] += scan.unexpected + [
        path for pid, paths in sorted(scan.files.items()) if pid not in stored for path in paths
    ]
    problems["bad_manifest_line"] += scan.bad_manifest_lines
    return MirrorReport(
        truth_photos=len(truth.photo_ids),
        states=Counter(
            catalog[pid].state if pid in catalog else "missing" for pid in truth.photo_ids
        ),
        stored_bytes=sum(photo.bytes or 0 for photo in stored.values()),
        files=sum(len(paths) for paths in scan.files.values()) + len(scan.unexpected),
        manifest_lines=scan.manifest_count,
        failed_by_class=Counter(
            error_head(p.last_error) for p in catalog.values() if p.state == "failed"
        ),
        gone_by_reason=Counter(
            error_head(p.last_error) for p in catalog.values() if p.state == "gone"
        ),
        problems=problems,
        notes=[f"{len(scan.partials):,} partial transfers left in .~tmp~ directories"]
        if scan.partials
        else [],
        storage=scan.label,
        objects=scan.objects,
        object_bytes=scan.bytes,
        versions=scan.versions,
        delete_markers=scan.delete_markers,
    )


def check_outcomes(
    catalog: dict[int, CatalogPhoto], truth: GroundTruth, problems: dict[str, list[str]]
) -> None:
    """Each ground-truth photo settled as its fault says; nothing stored beyond the truth."""
    for pid in sorted(truth.photo_ids):
        photo = catalog.get(pid)
        if photo is None:
            problems["not_in_catalog"].append(f"photo {pid}")
            continue
        expected = truth.expected(pid)
        fault = f" (fault {expected.mode})" if expected.mode else ""
        if photo.state not in SETTLED:
            problems["unsettled"].append(f"photo {pid}: {photo.state}{fault}")
        elif photo.state not in expected.states:
            wanted = " or ".join(sorted(expected.states))
            problems["wrong_outcome"].append(
                f"photo {pid}: {describe(photo)}, expected {wanted}{fault}"
            )
        elif photo.state in CLASSIFIED and error_class(photo.last_error) != expected.error_class:
            problems["wrong_class"].append(
                f"photo {pid}: {describe(photo)}, expected class {expected.error_class}{fault}"
            )
    for pid, photo in sorted(catalog.items()):
        if photo.state == "stored" and pid not in truth.photo_ids:
            problems["not_in_truth"].append(f"photo {pid}: stored")
        if (photo.state == "stored") != (photo.sha256 is not None):
            problems["no_stored_record"].append(
                f"photo {pid}: state {photo.state}, "
                + ("a stored_images row" if photo.sha256 else "no stored_images row")
            )


def check_stored(photo: CatalogPhoto, scan: StorageScan, problems: dict[str, list[str]]) -> None:
    """One file where the layout and the catalog say, first written as it is, a manifest line.
    (Its bytes: check_bytes.)"""
    pid = photo.photo_id
    if photo.path is None:
        return  # no stored_images row (reported): no path or checksum to hold a file to
    paths = scan.files.get(pid, [])
    if not paths:
        deleted = ", deleted (a delete marker is its latest)" if photo.path in scan.deleted else ""
        problems["missing_file"].append(f"photo {pid}: catalog path {photo.path}, no file{deleted}")
    elif len(paths) > 1:
        problems["second_copy"].append(f"photo {pid}: {', '.join(sorted(paths))}")
    elif paths[0] != photo.path:
        problems["misplaced_file"].append(f"photo {pid}: {paths[0]}, catalog says {photo.path}")
    if photo.path not in layout_paths(pid):
        problems["misplaced_file"].append(f"photo {pid}: catalog path {photo.path} is off layout")
    if photo.path in scan.overwritten:
        problems["overwritten"].append(f"photo {pid}: {scan.overwritten[photo.path]}")
    lines = scan.manifest_lines.get(pid, [])
    if not lines:
        problems["missing_manifest_line"].append(f"photo {pid}")
    elif not any(manifest_differences(line, photo) == [] for line in lines):
        differences = "; ".join(manifest_differences(lines[-1], photo))
        problems["manifest_mismatch"].append(f"photo {pid}: {differences}")


def bytes_to_check(photo: CatalogPhoto, scan: StorageScan) -> bool:
    """Whether the photo's file is where the catalog says, to be read: not when overwritten
    (that names what is wrong with its bytes)."""
    return (
        photo.path is not None
        and photo.path in scan.files.get(photo.photo_id, [])
        and photo.path not in scan.overwritten
    )


def check_bytes(
    photo: CatalogPhoto, stored: Digest, truth: GroundTruth, problems: dict[str, list[str]]
) -> None:
    digest, size = stored
    served = hashlib.sha256(truth.image_bytes(photo.photo_id)).hexdigest()
    pid = photo.photo_id
    if digest != photo.sha256 or size != photo.bytes:
        problems["bad_checksum"].append(
            f"photo {pid}: file sha256 {digest[:12]}.. ({size:,} B),"
            f" catalog {str(photo.sha256)[:12]}.. ({photo.bytes:,} B)"
        )
    elif digest != served:
        problems["bad_checksum"].append(
            f"photo {pid}: file and catalog sha256 {digest[:12]}.., image host {served[:12]}.."
        )


def layout_paths(photo_id: int) -> set[str]:
    return {image_path(photo_id, ext) for ext in IMAGE_EXTENSIONS}


def manifest_differences(line: dict, photo: CatalogPhoto) -> list[str]:
    """`field: manifest X, catalog Y` for each attribution field that differs."""
    out = []
    for key in MANIFEST_FIELDS:
        if line.get(key) != photo.attribution[key]:
            out.append(f"{key}: manifest {line.get(key)!r}, catalog {photo.attribution[key]!r}")
    return out


def describe(photo: CatalogPhoto) -> str:
    return photo.state + (f" ({photo.last_error})" if photo.last_error else "")


def error_class(last_error: str | None) -> str | None:
    """The queue's class of a failure: the report's result before its reason."""
    return last_error.split(":", 1)[0].strip() if last_error else None


def error_head(last_error: str | None) -> str:
    """A failure's class and the gist of its reason, to count alike failures together:
    `retry: timeout (total 2s, read 1s)` -> `retry: timeout`."""
    if not last_error:
        return "(no reason)"
    head = ":".join(last_error.split(":", 2)[:2])
    return re.sub(r"\s*\(.*$", "", head).strip()


# ---------------------------------------------------------------------------- reading
def read_catalog(conn) -> tuple[dict[int, CatalogPhoto], list[int]]:
    """Every catalog photo with its stored record, streamed; and stored_images rows whose
    photo the catalog lacks. One read-only transaction: both reads see one snapshot, and no
    lock outlives the check (starting it commits whatever the caller left pending)."""
    query = (
        "SELECT i.photo_id, i.state, i.last_error, i.license_id, l.name, l.url, i.owner,"
        " i.owner_name, i.title, i.page_url, HEX(s.sha256), s.bytes, s.path"
        " FROM images i LEFT JOIN licenses l ON l.id = i.license_id"
        " LEFT JOIN stored_images s ON s.image_id = i.id"
    )
    catalog: dict[int, CatalogPhoto] = {}
    with conn.cursor() as cur:
        cur.execute("START TRANSACTION READ ONLY")
    try:
        with conn.cursor(pymysql.cursors.SSCursor) as cur:
            cur.execute(query)
            for row in cur:
                photo = catalog_photo(row)
                catalog[photo.photo_id] = photo
        with conn.cursor() as cur:
            cur.execute(
                "SELECT s.image_id FROM stored_images s LEFT JOIN images i ON i.id = s.image_id"
                " WHERE i.id IS NULL ORDER BY s.image_id"
            )
            orphans = [int(row[0]) for row in cur.fetchall()]
    finally:
        conn.commit()
    return catalog, orphans


def catalog_photo(row: tuple) -> CatalogPhoto:
    pid, state, last_error, *attribution, sha256, size, path = row
    fields = dict(zip((*ATTRIBUTION, "page_url"), attribution, strict=True))
    fields["license_id"] = int(fields["license_id"])
    return CatalogPhoto(
        int(pid),
        state,
        last_error,
        {**fields, "path": path},
        sha256.lower() if sha256 else None,
        int(size) if size is not None else None,
        path,
    )


# ---------------------------------------------------------------------------- the lab's
def lab_storage_root(
    config: LabConfig, droplet_id: str = "st-1", root: str = LAB_STORAGE_ROOT
) -> Path:
    """The storage droplet's root as the host reads it: through its PID 1's view of its own
    filesystem (/proc/PID/root), so the overlay is read merged, exactly as sshd writes it."""
    droplet = find_droplet(config, droplet_id)
    return Path(f"/proc/{droplet.pid}/root") / root.lstrip("/")


def lab_storage(config: LabConfig, bucket: str = IMAGES_BUCKET, port: int = LAB_S3_PORT) -> Bucket:
    """The lab's images bucket, read with its admin identity (the private pillar root's
    record: the lab's S3 identities are made there) through the S3 gateway of the first live
    st-* droplet, reached from the host over the lab's bridge."""
    endpoint = f"http://{first_storage_droplet(config).address}:{port}"
    secrets = writer()
    try:
        record = secrets.load_record(private_pillar(config), must_exist=True)
        admin = record["keys"][secrets.STORAGE_ADMIN]
    except (secrets.SecretsError, KeyError) as error:
        raise LabError(f"the lab's S3 admin key: {error}") from None
    key = S3Key(admin["access_key"], admin["secret_key"])
    reader = client(endpoint, key, pool=LAB_S3_READERS)
    return Bucket(reader, bucket, f"s3://{bucket} at {endpoint}", workers=LAB_S3_READERS)


def first_storage_droplet(config: LabConfig) -> Droplet:
    """The first st-* droplet by id whose PID 1 is alive (a destroyed one leaves the rest)."""
    state = load_state(config)
    droplets = state.droplets.values() if state else ()
    alive = sorted((d for d in droplets if d.id.startswith("st-") and d.alive()), key=by_id)
    if not alive:
        raise LabError("no live st-* droplet in the lab: nothing serves the images bucket")
    return alive[0]


def by_id(droplet: Droplet) -> str:
    return droplet.id


def lab_catalog(
    config: LabConfig, droplet_id: str = "db-1", database: str = "ccmirror"
) -> pymysql.Connection:
    """A connection to the lab's catalog as MariaDB's root over its unix socket, reached
    through the droplet's root: Debian's root logs in by socket credentials (the host's root
    is the droplet's), so no password is read or needed."""
    droplet = find_droplet(config, droplet_id)
    socket = f"/proc/{droplet.pid}/root{LAB_MARIADB_SOCKET}"
    return pymysql.connect(unix_socket=socket, user="root", database=database, autocommit=True)
