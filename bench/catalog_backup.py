"""Catalog backup: `mariadb-dump --single-transaction` (logical) against `mariadb-backup`
(physical), each piped through zstd as the backup job streams it, on a catalog of N photos
(half of them stored) in a private MariaDB; then the logical restore into a fresh database.
With --s3, also the real thing: `backup_catalog` streaming into a local SeaweedFS (one volume
server, the images bucket with object lock) and `restore_catalog` from it into a fresh catalog.

    .venv/bin/python bench/catalog_backup.py --rows 2000000 --port 13324 [--s3]

Prints seconds, compressed bytes and rows/s per step, and the ratio physical/logical.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from harvester.db import connect
from harvester.migrate import migrate
from lab.processes.mariadb import LocalMariaDB

FILL_IMAGES = """
INSERT INTO images (photo_id, owner, owner_name, title, license_id, page_url, image_url,
                    image_size, width, height, uploaded_at, sources, data_source, state)
SELECT 50000000000 + seq, CONCAT(seq MOD 977777, '@N0', seq MOD 7),
       CONCAT('owner ', seq MOD 977777),
       CONCAT('a photo title of some length ', seq), 1 + seq MOD 16,
       CONCAT('https://www.flickr.com/photos/', seq MOD 977777, '/', 50000000000 + seq),
       CONCAT('https://live.staticflickr.com/65535/', 50000000000 + seq, '_0123456789_o.jpg'),
       'o', 4000, 3000, 1400000000 + seq, 'timeslice', 'timeslice',
       IF(seq MOD 2 = 0, 'stored', 'pending')
FROM seq_1_to_{rows}
"""
FILL_STORED = """
INSERT INTO stored_images (image_id, sha256, bytes, path, worker, lease_id, stored_at, md5)
SELECT id, UNHEX(SHA2(id, 256)), 2000000 + id MOD 1000000,
       CONCAT('images/00/00/', photo_id, '.jpg'), 'dl-1', id DIV 300, NOW(6), UNHEX(MD5(id))
FROM images WHERE state = 'stored'
"""


def timed(argv: str) -> tuple[float, int]:
    """Seconds and stdout bytes of a shell pipeline."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as out:
        subprocess.run(["bash", "-o", "pipefail", "-c", argv], stdout=out, check=True)
        out.seek(0, 2)
        return time.monotonic() - started, out.tell()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--port", type=int, default=13324)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/catalog-bench-db"))
    parser.add_argument("--zstd", default="zstd -3 -T0 -q")
    parser.add_argument("--s3", action="store_true", help="also through SeaweedFS's S3 gateway")
    parser.add_argument("--skip-local", action="store_true", help="only the --s3 steps")
    args = parser.parse_args()
    server = LocalMariaDB(args.dir, port=args.port)
    started_server = server.ensure_running()
    server.set_globals(innodb_buffer_pool_size=2 << 30)
    try:
        run(server, args)
    finally:
        if started_server:
            server.stop()


def run(server: LocalMariaDB, args: argparse.Namespace) -> None:
    url = server.fresh_database("bench_catalog")
    conn = connect(url, autocommit=True)
    migrate(conn)
    started = time.monotonic()
    with conn.cursor() as cur:
        cur.execute(FILL_IMAGES.format(rows=int(args.rows)))
        cur.execute(FILL_STORED)
    conn.close()
    print(f"filled {args.rows:,} images in {time.monotonic() - started:.1f}s")
    if args.s3:
        through_s3(server, url, args)
    if not args.skip_local:
        local(server, args)
    server.drop_database("bench_catalog")


def through_s3(server: LocalMariaDB, url: str, args: argparse.Namespace) -> None:
    """backup_catalog into a local SeaweedFS, restore_catalog from it into a fresh catalog."""
    from harvester.backup.catalog import backup_catalog, restore_catalog
    from harvester.config import StorageSettings
    from lab.processes.seaweedfs import ClusterSettings, start_cluster
    from lab.processes.seaweedfs_s3 import admin_client, create_images_bucket

    with tempfile.TemporaryDirectory(prefix="catalog-bench-weed-") as base:
        settings = ClusterSettings(volume_servers=1, replication="000", stop_timeout=5.0)
        cluster = start_cluster(Path(base), settings)
        try:
            create_images_bucket(admin_client(cluster))
            storage = StorageSettings(
                endpoint=cluster.s3_url,
                bucket="images",
                access_key=cluster.admin_access_key,
                secret_key=cluster.admin_secret_key,
            )
            made = backup_catalog(url, storage, keep=2)
            print(f"backup_catalog into S3: {made['seconds']:.1f}s, {made['bytes']:,} bytes")
            server.fresh_database("bench_fresh")
            root = f"mysql://root@localhost/bench_fresh?unix_socket={server.socket}"
            migrate_url(root)
            restored = restore_catalog(root, storage)
            print(f"restore_catalog from S3: {restored['seconds']:.1f}s, {restored['photos']:,}"
                  f" photos ({args.rows / restored['seconds']:,.0f} rows/s)")  # fmt: skip
        finally:
            cluster.stop()
            server.drop_database("bench_fresh")


def migrate_url(url: str) -> None:
    conn = connect(url, autocommit=True)
    migrate(conn)
    conn.close()


def local(server: LocalMariaDB, args: argparse.Namespace) -> None:
    login = f"--socket={server.socket} --user=root"
    dump_file = args.dir / "dump.sql.zst"
    seconds, _ = timed(
        f"mariadb-dump {login} --single-transaction --quick --skip-lock-tables bench_catalog"
        f" | {args.zstd} > {dump_file}"
    )
    dump_bytes = dump_file.stat().st_size
    print(f"logical dump: {seconds:.1f}s, {dump_bytes:,} bytes ({args.rows / seconds:,.0f} rows/s)")
    target = args.dir / "physical"
    shutil.rmtree(target, ignore_errors=True)
    physical, physical_bytes = timed(
        f"mariadb-backup --backup {login} --datadir={server.datadir} --target-dir={target}"
        f" --stream=xbstream 2>/dev/null | {args.zstd}"
    )
    print(f"physical backup (whole server): {physical:.1f}s, {physical_bytes:,} bytes")
    server.fresh_database("bench_restored")
    restore, _ = timed(
        f"zstd -dc {dump_file} | mariadb {login} bench_restored",
    )
    print(f"logical restore: {restore:.1f}s ({args.rows / restore:,.0f} rows/s)")
    print(f"ratio physical/logical backup seconds: {physical / seconds:.2f}")
    server.drop_database("bench_restored")
    dump_file.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
