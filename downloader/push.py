"""Push a spool tree to write-only storage with rsync over SSH, retrying what is transient.

rsync sends a file to the path it has on this side, and the spool keeps a lease's files flat:
`link_tree` lays them out at their storage paths first, as hard links (no byte copied).

Storage runs `rrsync -wo -no-del` behind a forced command, so a push can only add or replace
files under the storage root (`ccmirror_common.layout`), never read or delete them. A push is
idempotent: paths depend only on the photo id, unchanged files are skipped by checksum, and
a changed file replaces the old one by an atomic rename (last push wins: the queue keeps
the sha256 of the latest report, and the newest lease's manifest describes the bytes).

Files arrive by `--partial --delay-updates`: each goes into `.~tmp~/` beside its final name
and all are renamed into place at the end of the run, so a reader of storage never sees half
a photo, and a cut transfer leaves its data in `.~tmp~/` for the next push of the same file
to resume from (rsync removes it then). Not `--partial-dir`: rrsync rewrites that path into a
pinned `/proc/self/fd/N`, with which rsync 3.5.0 silently drops the partial data; and plain
`--partial` would leave the truncated file under its final name until the next push.

What is retried, with exponential backoff and jitter, until `retry_seconds` or `attempts`:
a refused, timed-out, reset or dropped connection (ssh exit 255, rsync 10, 12, 30, 35),
rrsync's single-run lock, and a lost race for a shared `.~tmp~/`. Every droplet's push into
one directory (a day's `manifests/`, an `images/<aa>/<bb>/`) shares that directory's
`.~tmp~/`, and each rsync removes it when it empties: another rsync between its check and its
mkdir, or between its mkdir and its rename, then fails that file. rsync 3.5.0 reports the
first as "Unable to create partial-dir ... discarding completed file" and still exits 0, the
second as exit 23; either way a file did not land, so the run counts as failed, and the next
one sends only what is missing (`--checksum`).

What is not, because waiting does not fix it: a host key that does not match the pinned one,
a key storage does not accept, an option or read storage refuses (rrsync error), a local file
missing or unreadable, storage out of space, and the other rsync exit codes (1-5 usage and
protocol, 11 file I/O, 23/24 partial transfer).
"""

from __future__ import annotations

import logging
import os
import random
import re
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

log = logging.getLogger("downloader.push")

PARTIAL_DIR = ".~tmp~"  # rsync's own for --delay-updates, beside each file's final name
TRANSIENT_EXIT_CODES = {10, 12, 30, 35, 255}  # socket I/O, stream, timeouts, ssh's own
# stderr says more than the exit code: rrsync's refusals and a dropped link are both 12.
FATAL_PATTERNS = (
    "host key verification failed",
    "remote host identification has changed",
    "host key is known",
    "permission denied (publickey",
    "too many authentication failures",
    "no space left on device",
    "disk quota exceeded",
    "rrsync error:",
)
TRANSIENT_PATTERNS = ("another instance of rrsync is already accessing",)
# The shared `.~tmp~/` race (module docstring): the first line comes with exit code 0.
DISCARDED_PATTERN = "unable to create partial-dir"
PARTIAL_DIR_RACE = re.compile(
    r'rename ".*" -> ".*' + re.escape(PARTIAL_DIR) + r'/[^"]*": No such file or directory',
    re.IGNORECASE,
)
# Lines most worth one line of error message, best first.
TELLING_PATTERNS = (
    "rrsync error:",
    DISCARDED_PATTERN,
    "has changed and you have requested strict checking",
    "host key is known",
    "host key verification failed",
    "permission denied",
    "connection refused",
    "connection timed out",
    "timed out",
    "no route to host",
    "network is unreachable",
    "could not resolve hostname",
    "connection reset",
    "connection closed",
    "no space left",
    "rsync: ",
    "rsync error:",
)


class PushFailed(RuntimeError):
    """The push did not complete; `transient` tells whether a later push may succeed."""

    def __init__(self, message: str, *, transient: bool, attempts: int) -> None:
        super().__init__(message)
        self.transient = transient
        self.attempts = attempts


class PushStopped(Exception):
    """The stop event was set before the push completed; what arrived stays on storage."""


@dataclass(frozen=True)
class StorageTarget:
    """Where and how to push: rrsync fixes the directory, so `root` is usually ''."""

    user: str
    host: str
    port: int
    key_path: Path
    known_hosts_path: Path
    root: str = ""

    @classmethod
    def from_spec(
        cls, spec: str, *, port: int, key_path: str | Path, known_hosts_path: str | Path
    ) -> StorageTarget:
        """From `user@host` or `user@host:path`, the form of the `storage` setting."""
        user, at, rest = spec.partition("@")
        if not at or not user:
            raise ValueError(f"storage must be user@host, not {spec!r}")
        if rest.startswith("["):  # [v6 address]:path
            host, _, after = rest[1:].partition("]")
            root = after.removeprefix(":")
        else:
            host, _, root = rest.partition(":")
        if not host:
            raise ValueError(f"storage must be user@host, not {spec!r}")
        return cls(user, host, port, Path(key_path), Path(known_hosts_path), root)

    @property
    def label(self) -> str:
        """For messages: who, where and which port (the destination has no port)."""
        return f"{self.user}@{self.host} port {self.port}"

    @property
    def destination(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.root}"


@dataclass(frozen=True)
class PushResult:
    attempts: int
    files_transferred: int  # files sent this time; unchanged ones are skipped
    bytes_transferred: int  # their sizes
    literal_bytes: int  # what had to travel: less when a partial or an old version matched
    seconds: float


@dataclass(frozen=True)
class Attempt:
    """One failed rsync run, as told to `on_retry` before the wait that follows it."""

    number: int
    exit_code: int
    error: str
    delay: float


def push_tree(
    local_root: Path,
    paths: list[str] | None,
    target: StorageTarget,
    *,
    timeout: float = 120.0,
    connect_timeout: float = 10.0,
    retry_seconds: float = 600.0,
    attempts: int | None = None,
    backoff: float = 1.0,
    max_backoff: float = 60.0,
    stop_event: threading.Event | None = None,
    on_retry: Callable[[Attempt], None] | None = None,
    extra_args: tuple[str, ...] = (),
) -> PushResult:
    """Push `paths` (relative to `local_root`; None: the whole tree) to `target`.

    `timeout` is rsync's I/O timeout per run; transient failures are retried until
    `retry_seconds` have passed since the start or `attempts` runs were made. Raises
    PushFailed (with `.transient`) or PushStopped."""
    if paths is not None and not paths:
        return PushResult(
            attempts=0, files_transferred=0, bytes_transferred=0, literal_bytes=0, seconds=0.0
        )  # nothing to send: no need to reach storage
    stop_event = stop_event or threading.Event()
    started = time.monotonic()
    deadline = started + retry_seconds
    with tempfile.TemporaryDirectory(prefix="ccmirror-push-") as scratch:
        files_from = None
        if paths is not None:
            files_from = Path(scratch) / "files"
            files_from.write_text("".join(f"{p}\n" for p in checked_paths(local_root, paths)))
        argv = rsync_command(
            local_root,
            target,
            files_from=files_from,
            timeout=timeout,
            connect_timeout=connect_timeout,
            extra_args=extra_args,
        )
        number = 0
        while True:
            number += 1
            code, stdout, stderr = _run(argv, Path(scratch), stop_event)
            if code == 0 and not discarded_a_file(stderr):
                return _result(number, stdout, time.monotonic() - started)
            transient, error = classify(code, stderr)
            if not transient:
                raise PushFailed(
                    f"push to {target.label} failed: {error}",
                    transient=False,
                    attempts=number,
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (attempts is not None and number >= attempts):
                raise PushFailed(
                    f"push to {target.label} gave up after {number} attempts in "
                    f"{time.monotonic() - started:.0f}s: {error}",
                    transient=True,
                    attempts=number,
                )
            delay = min(backoff_delay(number, backoff, max_backoff), remaining)
            log.warning("push attempt %d failed (%s); retrying in %.1fs", number, error, delay)
            if on_retry is not None:
                on_retry(Attempt(number, code, error, delay))
            if stop_event.wait(delay):
                raise PushStopped(f"stopped after {number} attempts: {error}")


def rsync_command(
    local_root: Path,
    target: StorageTarget,
    *,
    files_from: Path | None = None,
    timeout: float = 120.0,
    connect_timeout: float = 10.0,
    extra_args: tuple[str, ...] = (),
) -> list[str]:
    """The rsync argv for one run (also used by tests that kill a push midway)."""
    argv = [
        "rsync",
        # Skip by content, not by size and time: a re-fetched photo has a new mtime, and
        # a changed one may keep its size. Cheap: xxh128, and only for files on both sides.
        "--checksum",
        # Storage owns what it stores: no owner, group or times from the droplet; readable
        # by storage's other users whatever the spool's umask was.
        "--perms",
        "--chmod=D0755,F0644",
        # Whole files only under their final names; a cut transfer's data kept aside for
        # the next push to resume from (see the module docstring).
        "--partial",
        "--delay-updates",
        f"--timeout={max(1, round(timeout))}",
        "--stats",
        "--rsh",
        ssh_command(target, connect_timeout),
    ]
    if files_from is not None:
        argv.append(f"--files-from={files_from}")  # implies --relative: same paths on storage
    else:
        argv.append("--recursive")
    return [*argv, *extra_args, f"{local_root}/", target.destination]


def ssh_command(target: StorageTarget, connect_timeout: float = 10.0) -> str:
    """ssh with only the pinned host key and the one storage key, and never a prompt."""
    options = {
        "UserKnownHostsFile": str(target.known_hosts_path),
        "GlobalKnownHostsFile": "/dev/null",
        "StrictHostKeyChecking": "yes",
        "UpdateHostKeys": "no",
        "IdentitiesOnly": "yes",
        "BatchMode": "yes",
        "ConnectTimeout": str(max(1, round(connect_timeout))),
        "ServerAliveInterval": "15",
        "ServerAliveCountMax": "4",
        "LogLevel": "ERROR",
    }
    # -F /dev/null: no ~/.ssh/config or /etc/ssh/ssh_config changes what a push does.
    words = ["ssh", "-F", "/dev/null", "-i", str(target.key_path), "-p", str(target.port)]
    for name, value in options.items():
        words += ["-o", f"{name}={value}"]
    return shlex.join(words)


def checked_paths(local_root: Path, paths: list[str]) -> list[str]:
    """The relative paths to push, each an existing file under `local_root`: a bad one is a
    caller's bug, told now rather than as rsync's exit 23 after the rest went."""
    return list(checked_sources(local_root, {path: path for path in paths}))


def checked_sources(local_root: Path, sources: Mapping[str, str]) -> dict[str, str]:
    """Storage path -> its file under `local_root`, both relative and clean, each file
    there (checked_paths, for files that are not at their storage paths)."""
    checked = {}
    for key, source in sources.items():
        clean_key, clean_source = _relative(key), _relative(source)
        if not (local_root / clean_source).is_file():
            raise FileNotFoundError(f"nothing to push at {local_root / clean_source}")
        checked[clean_key] = clean_source
    return checked


def _relative(path: str) -> str:
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\n" in path or not pure.parts:
        raise ValueError(f"not a relative storage path: {path!r}")
    return str(pure)


def link_tree(local_root: Path, sources: Mapping[str, str], layout: Path) -> list[str]:
    """Lay the files out under `layout` at their storage paths, as hard links to
    `local_root`'s (no byte copied; the same filesystem), for rsync, which sends a file to
    the path it has here. Idempotent: a link already there is kept, so a push killed midway
    lays out only the rest. The storage paths, for push_tree."""
    checked = checked_sources(local_root, sources)
    made: set[str] = set()
    for key, source in checked.items():
        target = layout / key
        parent = str(target.parent)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        try:
            os.link(local_root / source, target)
        except FileExistsError:
            if not os.path.samefile(local_root / source, target):
                os.unlink(target)  # not ours (a torn earlier layout): the spool's file wins
                os.link(local_root / source, target)
    return list(checked)


def discarded_a_file(stderr: str) -> bool:
    """Whether rsync dropped a received file although it exits 0 (the `.~tmp~/` race)."""
    return DISCARDED_PATTERN in stderr.lower()


def classify(exit_code: int, stderr: str) -> tuple[bool, str]:
    """(transient, one-line error) for a failed rsync run, or one that dropped a file."""
    error = summarize(stderr, exit_code)
    lowered = stderr.lower()
    if any(p in lowered for p in TRANSIENT_PATTERNS):
        return True, error
    if any(p in lowered for p in FATAL_PATTERNS):
        return False, error
    if discarded_a_file(stderr) or PARTIAL_DIR_RACE.search(stderr):
        return True, error  # another push emptied the shared .~tmp~/: the next run sends it
    return exit_code in TRANSIENT_EXIT_CODES, error


def summarize(stderr: str, exit_code: int) -> str:
    """The one stderr line that says most (ssh's or rrsync's reason beats rsync's code)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for pattern in TELLING_PATTERNS:
        for line in lines:
            if pattern in line.lower():
                return f"{_tidy(line)} (exit {exit_code})"
    return f"{_tidy(lines[-1])} (exit {exit_code})" if lines else f"rsync exited with {exit_code}"


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential with equal jitter: never less than half the step, so a fleet of droplets
    that lost storage together does not come back in lockstep."""
    step = min(cap, base * 2 ** (attempt - 1))
    return step / 2 + random.uniform(0, step / 2)


def _tidy(line: str) -> str:
    line = re.sub(r"^\S*rrsync error:\s*", "storage refused: ", line)
    return line[:300]


def _run(argv: list[str], scratch: Path, stop_event: threading.Event) -> tuple[int, str, str]:
    """Run rsync once (its own process group, so ssh goes with it on a stop)."""
    with (
        open(scratch / "stdout", "w+") as out,  # files, not pipes: nothing to fill and block
        open(scratch / "stderr", "w+") as err,
    ):
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
        )
        while True:
            try:
                code = process.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                if stop_event.is_set():
                    _end(process)
                    raise PushStopped("stopped during a push") from None
        out.seek(0)
        err.seek(0)
        return code, out.read(), err.read()


def _end(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)  # start_new_session: the group is rsync's pid
        process.wait(timeout=10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _result(attempts: int, stats: str, seconds: float) -> PushResult:
    return PushResult(
        attempts=attempts,
        files_transferred=_stat(stats, "Number of regular files transferred"),
        bytes_transferred=_stat(stats, "Total transferred file size"),
        literal_bytes=_stat(stats, "Literal data"),
        seconds=seconds,
    )


def _stat(stats: str, name: str) -> int:
    match = re.search(rf"^{re.escape(name)}: ([\d,]+)", stats, re.MULTILINE)
    return int(match.group(1).replace(",", "")) if match else 0
