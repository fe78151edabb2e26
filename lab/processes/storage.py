"""A real write-only storage server for tests and the lab: sshd + rrsync, as on a storage host.

`start_storage(base_dir)` starts `sshd -D -e` as a child with a config of its own, a
throw-away ed25519 host key, and one throw-away client key pair for the downloader. The
client key may only run `rrsync -wo -no-del -no-lock ROOT`: write only, no delete, no shell,
no pty, no forwarding. A known_hosts file pins the host key, as a droplet's does.

    base_dir/          root 0755; it and every parent must pass sshd's StrictModes walk
      sshd/            sshd_config, host key, authorized_keys, pid file, sshd.log
      client/          0700: the downloader's key pair and known_hosts
      root/            ROOT, owned by the storage user

`-no-lock` on purpose: without it rrsync holds an exclusive lock on ROOT for the whole
transfer, so a second droplet pushing at the same time is turned away ("Another instance of
rrsync is already accessing this directory"). The lock is a convenience, not a safeguard.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab.processes import child

STORAGE_USER = "ccmirror-storage"
STORAGE_HOME = Path("/var/lib/ccmirror-storage")
SSHD = "/usr/sbin/sshd"  # sshd re-executes itself, so it must be started by absolute path
RRSYNC = "/usr/bin/rrsync"
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it


class StorageError(RuntimeError):
    """The storage server could not be set up or started; the message says why."""


@dataclass
class RunningStorage:
    """A running sshd that accepts only the downloader's key, only for rrsync into `root`."""

    root: Path
    host: str
    port: int
    user: str
    key_path: Path  # the downloader's private key (0600)
    known_hosts_path: Path  # pins this server's host key for [host]:port
    process: subprocess.Popen | None = field(repr=False)
    config_path: Path = field(repr=False, default=Path())
    log_path: Path = field(repr=False, default=Path())

    @property
    def target(self) -> str:
        """The rsync destination; rrsync fixes the directory, so the path part is empty."""
        return f"{self.user}@{self.host}:"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """(Re)start sshd with the same config, keys and port, and wait until it answers."""
        if self.running:
            return
        log = open(self.log_path, "ab")  # noqa: SIM115 - sshd holds it; closed in stop()
        try:
            self.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        finally:
            log.close()  # the child has its own copy of the descriptor
        _wait_until_answering(self, timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the listener and wait. Sessions already open finish on their own."""
        return child.stop(self.process, timeout)

    def __enter__(self) -> RunningStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_storage(
    base_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    user: str = STORAGE_USER,
    timeout: float = 10.0,
    lenient_sshd: bool = False,
) -> RunningStorage:
    """Set up a storage instance under `base_dir` (created) and start its sshd on host:port
    (a free port when None). Needs root: it creates `user` and runs sshd.

    `lenient_sshd` allows ptys and forwarding in sshd_config, as a stock sshd does, so that
    tests can show the key's own `restrict` holds where the server's config would not."""
    if os.geteuid() != 0:
        raise StorageError("the storage server needs root (sshd, useradd, chown)")
    account = ensure_user(user)
    base_dir = base_dir.resolve()
    _make_dir(base_dir, 0o755)
    check_sshd_path(base_dir, account.pw_uid)
    sshd_dir, client_dir, root = base_dir / "sshd", base_dir / "client", base_dir / "root"
    _make_dir(sshd_dir, 0o755)
    _make_dir(client_dir, 0o700)
    _make_dir(root, 0o755)
    os.chown(root, account.pw_uid, account.pw_gid)
    _make_dir(PRIVSEP_DIR, 0o755)

    port = port or child.free_port(host)
    host_key = _keygen(sshd_dir / "ssh_host_ed25519_key", "ccmirror-lab-storage-host")
    client_key = _keygen(client_dir / "id_ed25519", "ccmirror-lab-downloader")
    authorized_keys = sshd_dir / "authorized_keys"
    _write(authorized_keys, authorized_keys_line(root, _public(client_key)) + "\n", 0o644)
    known_hosts = client_dir / "known_hosts"
    _write(known_hosts, known_hosts_line(host, port, _public(host_key)) + "\n", 0o644)
    config = sshd_dir / "sshd_config"
    text = sshd_config(host, port, host_key, authorized_keys, sshd_dir, user, lenient_sshd)
    _write(config, text, 0o644)

    storage = RunningStorage(
        root=root,
        host=host,
        port=port,
        user=user,
        key_path=client_key,
        known_hosts_path=known_hosts,
        process=None,
        config_path=config,
        log_path=sshd_dir / "sshd.log",
    )
    storage.start(timeout)
    return storage


def authorized_keys_line(root: Path, public_key: str) -> str:
    # `restrict` turns off every forwarding, the pty and ~/.ssh/rc, and keeps doing so for
    # options OpenSSH adds later; the forced command runs whatever the client asked for.
    return f'restrict,command="{RRSYNC} -wo -no-del -no-lock {root}" {public_key}'


def known_hosts_line(host: str, port: int, public_key: str) -> str:
    pattern = host if port == 22 else f"[{host}]:{port}"
    key_type, key_blob = public_key.split()[:2]  # drop the comment
    return f"{pattern} {key_type} {key_blob}"


def sshd_config(
    host: str,
    port: int,
    host_key: Path,
    authorized_keys: Path,
    state_dir: Path,
    user: str,
    lenient: bool = False,
) -> str:
    allow = "yes" if lenient else "no"
    return f"""\
# A throw-away storage sshd (lab.processes.storage): one user, one key, rrsync only.
ListenAddress {host}
Port {port}
HostKey {host_key}
PidFile {state_dir / "sshd.pid"}
AuthorizedKeysFile {authorized_keys}
AllowUsers {user}
PermitRootLogin no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
X11Forwarding no
AllowAgentForwarding {allow}
AllowTcpForwarding {allow}
AllowStreamLocalForwarding {allow}
GatewayPorts no
PermitTunnel no
PermitTTY {allow}
PermitUserRC {allow}
PermitUserEnvironment no
PrintMotd no
UseDNS no
LogLevel VERBOSE
"""


def ensure_user(user: str = STORAGE_USER) -> pwd.struct_passwd:
    """The storage account, created when missing: a home, /bin/sh (the forced command runs
    through the login shell) and no password. Not '!' (locked) but '*': without PAM, sshd
    refuses a locked account even for a key."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        home = ["--create-home", "--home-dir", str(STORAGE_HOME)]
        result = _run("useradd", "--system", *home, "--shell", "/bin/sh", "-U", user, check=False)
        if result.returncode not in (0, 9):  # 9: created meanwhile by a parallel run
            raise StorageError(f"useradd {user} failed: {result.stderr.strip()}") from None
        account = pwd.getpwnam(user)
    if _shadow_password(user).startswith("!"):
        _run("usermod", "--password", "*", user)
    return account


def check_sshd_path(path: Path, uid: int) -> None:
    """Fail early, and clearly, where sshd would refuse the key silently: StrictModes wants
    authorized_keys and every directory up to / owned by root or the user and writable by no
    one else (so nothing under /tmp), and the user must be able to reach ROOT."""
    for directory in [path, *path.parents]:
        st = directory.stat()
        if st.st_uid not in (0, uid) or st.st_mode & 0o022:
            raise StorageError(
                f"{directory} is writable by others or owned by another user: sshd's "
                f"StrictModes would refuse an authorized_keys file under {path}"
            )
        if not st.st_mode & 0o001:
            raise StorageError(f"{directory} is not searchable by the storage user")


def _wait_until_answering(storage: RunningStorage, timeout: float) -> None:
    """Poll until sshd sends its banner; a child that exits early is an error with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if storage.process is not None and storage.process.poll() is not None:
            raise StorageError(f"sshd exited with {storage.process.returncode}: {_tail(storage)}")
        try:
            with socket.create_connection((storage.host, storage.port), timeout=1) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    storage.stop()
    raise StorageError(f"sshd did not answer on {storage.host}:{storage.port}: {_tail(storage)}")


def _tail(storage: RunningStorage) -> str:
    try:
        lines = storage.log_path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


def _keygen(path: Path, comment: str) -> Path:
    """A new ed25519 key pair at `path` (private, 0600) and `path.pub`; never printed."""
    path.unlink(missing_ok=True)
    path.with_suffix(".pub").unlink(missing_ok=True)
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))
    os.chmod(path, 0o600)
    return path


def _public(private_key: Path) -> str:
    return private_key.with_suffix(".pub").read_text().strip()


def _make_dir(path: Path, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)  # whatever the umask was


def _write(path: Path, text: str, mode: int) -> None:
    path.write_text(text)
    os.chmod(path, mode)


def _shadow_password(user: str) -> str:
    for line in Path("/etc/shadow").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == user:
            return rest.partition(":")[0]
    return ""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise StorageError(f"{argv[0]} failed: {result.stderr.strip()}")
    return result
