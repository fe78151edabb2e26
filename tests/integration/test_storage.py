"""Write-only storage for real: sshd with the restricted key, rrsync, rsync over SSH.

Each storage instance lives under `.lab/` in the repository rather than the temp folder:
sshd's StrictModes refuses an authorized_keys file below a world-writable /tmp.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from ccmirror_common.layout import image_path, manifest_path
from downloader.push import (
    PARTIAL_DIR,
    Attempt,
    PushFailed,
    PushResult,
    PushStopped,
    StorageTarget,
    classify,
    push_tree,
    rsync_command,
    ssh_command,
)
from lab.processes.child import free_port
from lab.processes.storage import RunningStorage
from tests.conftest import make_storage, remove_storage, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sshd and useradd need root")

FAST = {"backoff": 0.1, "max_backoff": 0.5, "connect_timeout": 3, "timeout": 20}


@pytest.fixture(scope="module")
def shared_storage() -> Iterator[RunningStorage]:
    storage = make_storage()
    yield storage
    remove_storage(storage)


@pytest.fixture(scope="module")
def lenient_storage() -> Iterator[RunningStorage]:
    """The same key behind an sshd that allows ptys and forwarding, as a stock one does."""
    storage = make_storage(lenient_sshd=True)
    yield storage
    remove_storage(storage)


@pytest.fixture(params=["hardened sshd", "lenient sshd"])
def any_storage(request) -> RunningStorage:
    """The key's own restrictions must hold whatever the server's config allows."""
    name = "shared_storage" if request.param == "hardened sshd" else "lenient_storage"
    return request.getfixturevalue(name)


@pytest.fixture
def own_storage() -> Iterator[RunningStorage]:
    """A storage of its own, for tests that stop it."""
    storage = make_storage()
    yield storage
    remove_storage(storage)


def target_of(storage: RunningStorage, **changes) -> StorageTarget:
    fields = {
        "user": storage.user,
        "host": storage.host,
        "port": storage.port,
        "key_path": storage.key_path,
        "known_hosts_path": storage.known_hosts_path,
    } | changes
    return StorageTarget(**fields)


def spool_lease(spool: Path, lease_id: int, photos: dict[int, bytes]) -> list[str]:
    """Write photos and a manifest into `spool` in the storage layout; their relative paths."""
    paths = []
    lines = []
    for photo_id, body in photos.items():
        path = image_path(photo_id, "jpg")
        (spool / path).parent.mkdir(parents=True, exist_ok=True)
        (spool / path).write_bytes(body)
        paths.append(path)
        lines.append(f'{{"id": {photo_id}, "sha256": "{hashlib.sha256(body).hexdigest()}"}}\n')
    manifest = manifest_path(lease_id, date(2026, 11, 23))
    (spool / manifest).parent.mkdir(parents=True, exist_ok=True)
    (spool / manifest).write_text("".join(lines))
    return [*paths, manifest]


def stored_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def ssh(storage: RunningStorage, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    argv = [*ssh_command(target_of(storage)).split(), *args]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def rsync(storage: RunningStorage, *args: str) -> subprocess.CompletedProcess:
    argv = ["rsync", "--rsh", ssh_command(target_of(storage)), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=20)


# -- pushing -------------------------------------------------------------------------------


def test_push_puts_every_file_at_its_layout_path(shared_storage: RunningStorage, tmp_path):
    photos = {1000 + n: os.urandom(2000 + n) for n in range(20)}
    paths = spool_lease(tmp_path, lease_id=11, photos=photos)
    spool_lease(tmp_path, lease_id=12, photos={5: b"another lease"})  # not this push's

    result = push_tree(tmp_path, paths, target_of(shared_storage), **FAST)

    assert result.files_transferred == 21
    stored = stored_files(shared_storage.root)
    for photo_id, body in photos.items():
        assert stored[image_path(photo_id, "jpg")] == body
    manifest = stored[manifest_path(11, date(2026, 11, 23))].decode()
    assert len(manifest.splitlines()) == 20
    assert image_path(5, "jpg") not in stored
    assert manifest_path(12, date(2026, 11, 23)) not in stored
    assert not [name for name in stored if PARTIAL_DIR in name or "/." in name]
    mode = (shared_storage.root / paths[0]).stat().st_mode & 0o777
    assert mode == 0o644  # readable on storage whatever the spool's umask was


def test_same_photo_pushed_twice_is_one_file_last_push_wins(
    shared_storage: RunningStorage, tmp_path
):
    target = target_of(shared_storage)
    first, second = tmp_path / "first", tmp_path / "second"
    paths = spool_lease(first, lease_id=21, photos={77_0001: b"A" * 5000})
    push_tree(first, paths, target, **FAST)

    again = push_tree(first, paths, target, **FAST)
    assert again.files_transferred == 0  # unchanged: skipped by checksum

    # Flickr lets an owner replace a photo: same id, same size, new bytes. The newer push
    # wins, whole, by rename; the queue keeps the sha256 of the latest report.
    spool_lease(second, lease_id=22, photos={77_0001: b"B" * 5000})
    replaced = push_tree(second, None, target, **FAST)
    assert replaced.files_transferred == 2  # the photo and lease 22's manifest

    photo = shared_storage.root / image_path(77_0001, "jpg")
    assert photo.read_bytes() == b"B" * 5000
    assert sorted(p.name for p in photo.parent.iterdir()) == [photo.name]


def test_push_killed_midway_resumes_and_converges(shared_storage: RunningStorage, tmp_path):
    body = os.urandom(12 << 20)
    paths = spool_lease(tmp_path, lease_id=31, photos={31_0001: body})
    target = target_of(shared_storage)
    final = shared_storage.root / paths[0]
    partial = final.parent / PARTIAL_DIR / final.name

    # Slowed down so it can be killed midway, as a droplet losing power would be.
    slow = rsync_command(tmp_path, target, extra_args=("--bwlimit=3000",))
    process = subprocess.Popen(slow, start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        wait_for(
            lambda: any(f.stat().st_size > 1 << 20 for f in final.parent.glob(".*.jpg.*")),
            10,
            "the transfer to be under way",
        )
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    wait_for(partial.exists, 10, "storage to keep the partial file aside")
    assert not final.exists()  # never half a photo under its final name

    result = push_tree(tmp_path, paths, target, **FAST)

    assert final.read_bytes() == body
    assert result.literal_bytes < len(body)  # resumed from the partial data
    assert not partial.parent.exists()


def test_two_droplets_push_at_once(shared_storage: RunningStorage, tmp_path):
    """Without rrsync's -no-lock the second would be turned away while the first runs."""
    spools = [tmp_path / "a", tmp_path / "b"]
    leases = [
        spool_lease(
            spool,
            lease_id=41 + n,
            photos={41_000 + 10 * n + k: os.urandom(1 << 20) for k in range(4)},
        )
        for n, spool in enumerate(spools)
    ]
    results: list[object] = [None, None]
    failures: list[Attempt] = []

    def push(n: int) -> None:
        extra = ("--bwlimit=8000",)  # long enough to overlap
        try:
            # Retries allowed: both manifests go through manifests/2026/11/23/.~tmp~/, which
            # each rsync removes when it empties, so the other may lose a file to the race
            # and send it again (downloader/push.py). Once this ran with attempts=1 and
            # rsync's exit 0 hid the dropped manifest: a KeyError below, one run in ~40.
            results[n] = push_tree(
                spools[n],
                leases[n],
                target_of(shared_storage),
                retry_seconds=20,
                on_retry=failures.append,
                extra_args=extra,
                **FAST,
            )
        except PushFailed as exc:  # kept as the result, for the assertion to show
            results[n] = exc

    threads = [threading.Thread(target=push, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(isinstance(r, PushResult) for r in results), results
    assert not [f for f in failures if "another instance of rrsync" in f.error], failures
    stored = stored_files(shared_storage.root)
    for spool, paths in zip(spools, leases, strict=True):
        for path in paths:
            assert stored[path] == (spool / path).read_bytes()


def test_a_file_rsync_drops_is_pushed_again_never_taken_as_stored(
    own_storage: RunningStorage, tmp_path
):
    """rsync 3.5.0 drops a received file whose `.~tmp~/` it cannot make, and exits 0. Pushes
    from two droplets into one directory race for that `.~tmp~/` (downloader/push.py); here
    a `.~tmp~` that storage's user cannot remove (an immutable file) makes it happen always."""
    paths = spool_lease(tmp_path, lease_id=81, photos={81_0001: b"and its manifest"})
    manifest = own_storage.root / paths[-1]
    blocker = manifest.parent / PARTIAL_DIR
    blocker.parent.mkdir(parents=True)
    owner = own_storage.root.stat()
    for directory in (blocker.parent, *blocker.parent.relative_to(own_storage.root).parents):
        os.chown(own_storage.root / directory, owner.st_uid, owner.st_gid)
    blocker.write_text("in the way")
    if subprocess.run(["chattr", "+i", str(blocker)], capture_output=True).returncode != 0:
        pytest.skip("no immutable files (chattr +i) on this filesystem")

    def unblock(attempt: Attempt) -> None:  # as the other droplet's push moving on
        subprocess.run(["chattr", "-i", str(blocker)], check=True)
        blocker.unlink()

    target = target_of(own_storage)
    try:
        with pytest.raises(PushFailed) as failed:
            push_tree(tmp_path, paths, target, attempts=2, **FAST)
        assert failed.value.transient
        assert "Unable to create partial-dir" in str(failed.value)
        assert not manifest.exists()

        again = push_tree(tmp_path, paths, target, on_retry=unblock, retry_seconds=20, **FAST)
    finally:
        subprocess.run(["chattr", "-i", str(blocker)], capture_output=True)
    assert again.attempts == 2
    assert manifest.read_bytes() == (tmp_path / paths[-1]).read_bytes()


def test_a_file_lost_to_the_partial_dir_race_is_retried():
    """The race's other face: `.~tmp~/` gone between rsync's mkdir and its rename (exit 23);
    the line as rsync 3.5.0 printed it under eight droplets pushing into one directory."""
    stderr = (
        'rsync: [receiver] rename "/srv/storage/manifests/2026/11/23/.40001.jsonl.5hsH6C" -> '
        '"manifests/2026/11/23/.~tmp~/40001.jsonl": No such file or directory (2)\n'
        "rsync error: some files/attrs were not transferred (see previous errors) (code 23)"
        " at main.c(1394) [sender=3.5.0]\n"
    )
    transient, error = classify(23, stderr)
    assert transient
    assert "40001.jsonl" in error
    other = stderr.replace(".~tmp~/", "")  # a rename into the final name: not this race
    assert classify(23, other)[0] is False


# -- storage away ---------------------------------------------------------------------------


def test_storage_down_push_retries_until_it_is_back(own_storage: RunningStorage, tmp_path):
    paths = spool_lease(tmp_path, lease_id=51, photos={51_0001: b"back again"})
    own_storage.stop()
    failures: list[Attempt] = []
    outcome: dict[str, object] = {}

    def push() -> None:
        try:
            outcome["result"] = push_tree(
                tmp_path,
                paths,
                target_of(own_storage),
                retry_seconds=20,
                on_retry=failures.append,
                **FAST,
            )
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=push)
    thread.start()
    wait_for(lambda: len(failures) >= 2, 10, "two failed attempts")
    own_storage.start()  # same port, same host key
    thread.join(20)

    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].attempts >= 3
    assert "Connection refused" in failures[0].error
    assert failures[1].delay >= FAST["backoff"]  # waits grow, and never drop to nothing
    assert (own_storage.root / paths[0]).read_bytes() == b"back again"


def test_storage_down_past_the_deadline_fails_clearly(own_storage: RunningStorage, tmp_path):
    paths = spool_lease(tmp_path, lease_id=52, photos={52_0001: b"nobody home"})
    own_storage.stop()
    started = time.monotonic()

    with pytest.raises(PushFailed) as failed:
        push_tree(tmp_path, paths, target_of(own_storage), retry_seconds=1.5, **FAST)

    assert failed.value.transient
    assert failed.value.attempts >= 2
    assert "gave up after" in str(failed.value)
    assert "Connection refused" in str(failed.value)
    assert time.monotonic() - started < 6


def test_stop_ends_the_retries(own_storage: RunningStorage, tmp_path):
    paths = spool_lease(tmp_path, lease_id=53, photos={53_0001: b"stop"})
    own_storage.stop()
    stop = threading.Event()

    with pytest.raises(PushStopped):
        push_tree(
            tmp_path,
            paths,
            target_of(own_storage),
            retry_seconds=60,
            stop_event=stop,
            on_retry=lambda attempt: stop.set(),
            **FAST,
        )


# -- refusals that are not retried -----------------------------------------------------------


def test_wrong_host_key_is_refused_at_once(shared_storage: RunningStorage, tmp_path):
    paths = spool_lease(tmp_path, lease_id=61, photos={61_0001: b"to an impostor?"})
    impostor = tmp_path / "impostor_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)], check=True)
    key_type, blob = impostor.with_suffix(".pub").read_text().split()[:2]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{shared_storage.host}]:{shared_storage.port} {key_type} {blob}\n")

    with pytest.raises(PushFailed) as failed:
        push_tree(
            tmp_path,
            paths,
            target_of(shared_storage, known_hosts_path=known_hosts),
            retry_seconds=30,
            **FAST,
        )

    assert not failed.value.transient
    assert failed.value.attempts == 1
    assert "has changed and you have requested strict checking" in str(failed.value)
    assert not (shared_storage.root / paths[0]).exists()


def test_unknown_key_is_refused_at_once(shared_storage: RunningStorage, tmp_path):
    paths = spool_lease(tmp_path, lease_id=62, photos={62_0001: b"who are you"})
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)

    with pytest.raises(PushFailed) as failed:
        push_tree(
            tmp_path, paths, target_of(shared_storage, key_path=stranger), retry_seconds=30, **FAST
        )

    assert not failed.value.transient
    assert failed.value.attempts == 1
    assert "Permission denied (publickey)" in str(failed.value)


# -- what the restricted key cannot do -------------------------------------------------------


def test_restricted_key_cannot_open_a_shell(any_storage: RunningStorage, tmp_path):
    login = ssh(any_storage, "-tt", any_storage.target.rstrip(":"))
    assert login.returncode != 0
    assert "PTY allocation request failed" in login.stderr

    plain = ssh(any_storage, any_storage.target.rstrip(":"))
    assert plain.returncode != 0
    assert "does not run rsync" in plain.stderr or "Not invoked via sshd" in plain.stderr
    # `ssh ... true` does exit 0: rrsync answers it itself, as a connectivity check.
    assert ssh(any_storage, any_storage.target.rstrip(":"), "true").returncode == 0


def test_restricted_key_cannot_run_a_command(any_storage: RunningStorage):
    marker = any_storage.root / "ran"  # the storage user could create it, were it let to
    host = any_storage.target.rstrip(":")
    for command in (
        f"touch {marker}",
        f"sh -c 'touch {marker}'",
        f"rsync --server -e.LsfxC . x; touch {marker}",  # no shell behind rrsync to split it
    ):
        result = ssh(any_storage, host, command)
        assert result.returncode != 0, command
        assert not marker.exists(), command


def test_restricted_key_cannot_read_a_file_back(any_storage: RunningStorage, tmp_path):
    paths = spool_lease(tmp_path / "spool", lease_id=71, photos={71_0001: b"secret? no, CC"})
    push_tree(tmp_path / "spool", paths, target_of(any_storage), **FAST)

    result = rsync(any_storage, any_storage.target + paths[0], str(tmp_path / "back"))

    assert result.returncode != 0
    assert "reading from write-only server is not allowed" in result.stderr
    assert not (tmp_path / "back").exists()


def test_restricted_key_cannot_delete(any_storage: RunningStorage, tmp_path):
    paths = spool_lease(tmp_path / "spool", lease_id=72, photos={72_0001: b"here to stay"})
    target = target_of(any_storage)
    push_tree(tmp_path / "spool", paths, target, **FAST)
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)

    result = rsync(any_storage, "-r", "--delete", f"{empty}/", any_storage.target)
    assert result.returncode != 0
    assert "--delete has been disabled" in result.stderr
    with pytest.raises(PushFailed) as failed:
        push_tree(empty, None, target, extra_args=("--delete",), retry_seconds=30, **FAST)
    assert not failed.value.transient  # a refusal is not retried
    assert "storage refused" in str(failed.value)

    assert (any_storage.root / paths[0]).read_bytes() == b"here to stay"


def test_restricted_key_cannot_forward_ports(any_storage: RunningStorage):
    host = any_storage.target.rstrip(":")
    local_port = free_port()
    forward = subprocess.Popen(
        [
            *ssh_command(target_of(any_storage)).split(),
            "-N",
            "-L",
            f"127.0.0.1:{local_port}:{any_storage.host}:{any_storage.port}",
            host,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sock = wait_for(lambda: _connect(local_port), 10, "ssh -L to listen")
        with sock:
            sock.settimeout(5)
            try:
                banner = sock.recv(64)
            except (ConnectionResetError, TimeoutError):  # refused, or nothing came through
                banner = b""
        assert not banner.startswith(b"SSH-")  # the tunnel to sshd itself was not opened
    finally:
        forward.terminate()
        try:
            forward.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # seen once on a loaded machine: make sure it ends
            forward.kill()
            forward.communicate()

    remote = ssh(
        any_storage,
        "-N",
        "-o",
        "ExitOnForwardFailure=yes",
        "-R",
        f"127.0.0.1:{free_port()}:127.0.0.1:22",
        host,
    )
    assert remote.returncode != 0
    assert "remote port forwarding failed" in remote.stderr


def test_storage_root_cannot_be_escaped(shared_storage: RunningStorage, tmp_path):
    paths = spool_lease(tmp_path, lease_id=73, photos={73_0001: b"elsewhere"})
    with pytest.raises(PushFailed) as failed:
        push_tree(tmp_path, paths, target_of(shared_storage, root="../escaped"), **FAST)
    assert not failed.value.transient
    assert not (shared_storage.root.parent / "escaped").exists()


def _connect(port: int) -> socket.socket | None:
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=1)
    except OSError:
        return None
