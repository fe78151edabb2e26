"""Bearer tokens of the queue's workers: one per worker, only its SHA-256 kept.

The tokens file is YAML, `tokens: {WORKER: "sha256:HEX"}`; `harvester token add` writes it
here and Salt renders it from pillar on the fleet. While Salt rotates the tokens a worker has
two, `WORKER: ["sha256:OLD", "sha256:NEW"]`, and either is taken, so no request fails between
the steps. The service re-reads it when it changes,
so adding or revoking a worker needs no restart. A token is 32 random bytes, so a plain
SHA-256 of it cannot be reversed or guessed; no slow password hash is needed.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
from pathlib import Path

import yaml

from ccmirror_common.tokens import TOKEN_PREFIX, hash_token, new_token  # noqa: F401 (the queue's names)

log = logging.getLogger("harvester.queue.tokens")
WORKER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
HASH_FORMAT = re.compile(r"^sha256:[0-9a-f]{64}$")


class TokenError(ValueError):
    """The tokens file or a worker name cannot be used; the message says why."""


Hashes = str | list[str]  # one hash, or the two of a rotation


def hashes_of(value: Hashes) -> list[str]:
    return value if isinstance(value, list) else [value]


def read_tokens(path: Path) -> dict[str, Hashes]:
    """worker -> token hash (or hashes); TokenError when the file is unreadable or malformed."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise TokenError(
            f"no tokens file at {path}: add a worker with `harvester token add`"
        ) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise TokenError(f"cannot read tokens file {path}: {exc}") from None
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if tokens is None:
        tokens = {}
    if not isinstance(tokens, dict):
        raise TokenError(f"tokens file {path}: 'tokens' must map worker names to hashes")
    for worker, digest in tokens.items():
        if not isinstance(worker, str) or not WORKER_NAME.match(worker):
            raise TokenError(f"tokens file {path}: bad worker name {worker!r}")
        digests = hashes_of(digest)
        if not digests or not all(isinstance(d, str) and HASH_FORMAT.match(d) for d in digests):
            raise TokenError(
                f"tokens file {path}: worker {worker}: not a sha256:HEX hash (or a list of them)"
            )
    return dict(tokens)


def write_tokens(path: Path, tokens: dict[str, Hashes]) -> None:
    """Replace the file atomically (a reader never sees half of it), readable by owner and
    group only. A file replaced keeps its owner and group: root running `harvester token
    add` on the queue's file must not leave it unreadable to the service, which would keep
    the old tokens (a revoked one valid). Raises TokenError, the file unchanged, when they
    cannot be kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# ccmirror queue tokens: worker -> sha256 of its bearer token\n" + yaml.safe_dump(
        {"tokens": dict(sorted(tokens.items()))}, default_flow_style=False
    )
    owner = path.stat() if path.exists() else None
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temp, 0o640)
        if owner is not None:
            _keep_owner(temp, path, owner)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _keep_owner(temp: str, path: Path, owner: os.stat_result) -> None:
    try:
        os.chown(temp, owner.st_uid, owner.st_gid)
    except PermissionError:
        raise TokenError(
            f"tokens file {path}: cannot keep its owner {owner.st_uid} and group "
            f"{owner.st_gid} (run as root or as its owner in its group); nothing changed"
        ) from None


def add_token(path: Path, worker: str, *, replace: bool = False) -> str:
    """A new token for `worker`, stored as its hash; returned once, never written anywhere."""
    if not WORKER_NAME.match(worker):
        raise TokenError(f"bad worker name {worker!r}: letters, digits, '.', '_', '-'; at most 100")
    tokens = read_tokens(path) if path.exists() else {}
    if worker in tokens and not replace:
        raise TokenError(f"worker {worker} has a token already (--replace issues a new one)")
    token = new_token()
    tokens[worker] = hash_token(token)
    write_tokens(path, tokens)
    return token


def revoke_token(path: Path, worker: str) -> None:
    tokens = read_tokens(path)
    if worker not in tokens:
        raise TokenError(f"worker {worker} has no token in {path}")
    del tokens[worker]
    write_tokens(path, tokens)


class TokenStore:
    """The service's view of the tokens file, re-read when the file changes (checked at most
    once a second). A file that turns bad keeps the last good tokens and logs why."""

    def __init__(self, path: Path, check_interval: float = 1.0) -> None:
        self.path = path
        self.check_interval = check_interval
        self._lock = threading.Lock()
        self._by_hash: dict[str, str] = {}
        self._signature: tuple | None = None
        self._checked = 0.0
        self._load(read_tokens(path), self._stat())

    def worker_for(self, token: str) -> str | None:
        """The worker whose token this is, or None."""
        self._maybe_reload()
        # Looked up by hash: the timing of the lookup says nothing about any stored token.
        return self._by_hash.get(hash_token(token))

    def workers(self) -> list[str]:
        self._maybe_reload()
        return sorted(set(self._by_hash.values()))

    def _stat(self) -> tuple | None:
        """What says the file changed. Its ctime too: Salt renames a 0600 root file into
        place and sets owner and mode after, and a read in between fails; the chown and
        chmod change only the ctime, and the file must be read again then."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)

    def _load(self, tokens: dict[str, Hashes], signature: tuple | None) -> None:
        self._by_hash = {
            digest: worker for worker, digests in tokens.items() for digest in hashes_of(digests)
        }
        self._signature = signature

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.check_interval:
            return
        with self._lock:
            self._checked = now
            signature = self._stat()
            if signature == self._signature:
                return
            try:
                tokens = read_tokens(self.path)
            except TokenError as exc:
                log.error("%s; keeping the %d tokens loaded before", exc, len(self._by_hash))
                self._signature = signature
                return
            self._load(tokens, signature)
            log.info("tokens file reloaded: %d workers", len(tokens))
