"""`weed filer.backup` between two test clusters: the main cluster's filer is the source, the
backup cluster's S3 gateway the sink, configured by the template the backup droplet's Salt
state renders (salt/backup/files/replication.toml.jinja), with the command line its unit runs.

`start_backup(base_dir, main, target)` writes the rendered replication.toml (0600: it holds
the sink's key) into a config directory of its own, starts the process and returns it; the
caller stops it (`process.stop()`). It starts from the main filer's earliest metadata log
(no checkpoint yet), so photos put before it started are backed up too.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from lab.processes.seaweedfs import Cluster, write_private
from lab.processes.seaweedfs_process import StorageError, WeedProcess

TEMPLATE = Path(__file__).resolve().parents[2] / "salt/backup/files/replication.toml.jinja"
TARGET_KEYS = ("endpoint", "bucket", "access_key", "secret_key")  # region: us-east-1


def render_replication_toml(target: dict[str, str]) -> str:
    """The template rendered as Salt's jinja renderer would, from the `target` mapping."""
    missing = [key for key in TARGET_KEYS if not target.get(key)]
    if missing:
        raise StorageError(f"backup target lacks {', '.join(missing)}")
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return environment.from_string(TEMPLATE.read_text()).render(target=target)


def backup_command(weed: str, config_dir: Path, filer: str, bucket: str) -> list[str]:
    """The unit's command line (the template's comment says why each flag)."""
    return [
        weed, f"-config_dir={config_dir}", "filer.backup", f"-filer={filer}",
        f"-filerPath=/buckets/{bucket}", "-filerProxy", "-doDeleteFiles=false",
    ]  # fmt: skip


def start_backup(
    base_dir: Path,
    main: Cluster,
    target: dict[str, str],
    bucket: str = "images",
    extra_args: tuple[str, ...] = (),
) -> WeedProcess:
    """Start `weed filer.backup` from `main`'s bucket `bucket` to the S3 `target`; returns
    the running process once its log shows it follows the filer."""
    config_dir = base_dir / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    write_private(config_dir / "replication.toml", render_replication_toml(target))
    args = [*backup_command(main.weed, config_dir, main.filer.address, bucket), *extra_args]
    process = WeedProcess("filer-backup", args, 0, base_dir / "filer-backup.log", base_dir)
    process.start()
    return process
