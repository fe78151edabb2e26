"""YFCC100M import benchmark: `harvester import-yfcc` against a raw LOAD DATA of the same file.

Generates N synthetic YFCC100M lines (lab.mission.yfcc_sample, 23 fields, plain TSV; kept between
runs), then in one run on a private MariaDB measures:

- raw: `LOAD DATA LOCAL INFILE` of the file into a table of 23 TEXT columns with no keys,
  the most MariaDB can take that file in (no parsing, no decoding, no checks, no index);
- import: `harvester import-yfcc` of the same file into a fresh migrated database (parse,
  decode, validate, build URLs, chunked LOAD DATA into staging, upsert into yfcc_photos);
- re-import: the same command again (every row already there and unchanged).

It prints rows/s of each, the import/raw ratio against the 0.8 target, and the import's
peak RSS against the 200 MB limit. Both loads run on the same server with the same buffer
pool (`--buffer-pool-mb`, set on the running server): yfcc_photos has a primary key, and a
key-ordered table larger than the buffer pool costs random I/O the key-less raw table never
pays, so the pool size is printed with the figures.

    .venv/bin/python bench/yfcc_import.py [--lines 1000000] [--buffer-pool-mb 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.mission.yfcc_sample import write_sample
from lab.processes.mariadb import LocalMariaDB

BIN = Path(sys.executable).parent
TARGET_RATIO = 0.8
RSS_LIMIT_MB = 200
PORT = 13310  # its own: bench/queue_service.py uses 13309, and each leaves its server up
WORK = Path(tempfile.gettempdir()) / "ccmirror-bench-yfcc"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--buffer-pool-mb", type=int, default=1024)
    parser.add_argument("--chunk-lines", type=int, default=200_000)
    args = parser.parse_args()

    db = LocalMariaDB(Path(tempfile.gettempdir()) / "ccmirror-bench-yfcc-mariadb", port=PORT)
    db.ensure_running()
    with db.root_connection() as conn, conn.cursor() as cur:
        cur.execute(f"SET GLOBAL innodb_buffer_pool_size = {args.buffer_pool_mb << 20}")
        cur.execute("SELECT @@innodb_buffer_pool_size")
        pool_mb = cur.fetchone()[0] >> 20

    path, lines, good = sample_file(args.lines, args.seed)
    size_mb = path.stat().st_size / 1e6
    print(
        f"file: {lines:,} lines ({good:,} CC photos), {size_mb:,.0f} MB plain TSV;"
        f" MariaDB buffer pool {pool_mb} MB; {os.cpu_count()} cores"
    )

    raw_seconds, raw_rows = raw_load(db, path)
    raw_rate = raw_rows / raw_seconds
    print(f"raw LOAD DATA: {raw_rows:,} rows in {raw_seconds:.1f}s = {raw_rate:,.0f} rows/s")

    env = fresh_database(db, "ccmirror_bench_yfcc")
    first, seconds, rss_mb = run_import(env, path, args.chunk_lines)
    rate = first["lines"] / seconds
    verdict = "ok" if rate >= TARGET_RATIO * raw_rate else "BELOW TARGET"
    print(
        f"import-yfcc:   {first['lines']:,} lines ({first['new']:,} new photos) in"
        f" {seconds:.1f}s = {rate:,.0f} rows/s = {rate / raw_rate:.2f}x raw"
        f" (target {TARGET_RATIO}x: {verdict})"
    )
    print(
        f"{'':15}peak RSS {rss_mb:.0f} MB"
        f" ({'ok' if rss_mb <= RSS_LIMIT_MB else 'OVER'} the {RSS_LIMIT_MB} MB limit)"
    )
    again, seconds, rss_mb = run_import(env, path, args.chunk_lines)
    rate = again["lines"] / seconds
    print(
        f"re-import:     {again['lines']:,} lines ({again['unchanged']:,} unchanged,"
        f" {again['new'] + again['changed']:,} written) in {seconds:.1f}s"
        f" = {rate:,.0f} rows/s = {rate / raw_rate:.2f}x raw; peak RSS {rss_mb:.0f} MB"
    )
    if first["new"] != good or again["unchanged"] != good:
        print("MISMATCH: the import did not store exactly the file's CC photos")
        return 1
    return 0


def sample_file(lines: int, seed: int) -> tuple[Path, int, int]:
    """The generated file, reused when a previous run wrote it (generation is deterministic)."""
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"yfcc_{lines}_seed{seed}.tsv"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        known = json.loads(meta.read_text())
        if known.get("bytes") == path.stat().st_size:
            return path, known["lines"], known["good"]
    began = time.monotonic()
    stats = write_sample(path, lines, seed=seed)
    meta.write_text(json.dumps({"lines": lines, "good": stats.good, "bytes": stats.bytes_written}))
    print(f"generated {path} in {time.monotonic() - began:.1f}s")
    return path, lines, stats.good


def fresh_database(db: LocalMariaDB, name: str) -> dict[str, str]:
    with db.root_connection() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCMIRROR_")}
    env["CCMIRROR_DB_URL"] = db.url(name)
    subprocess.run([str(BIN / "harvester"), "migrate"], env=env, check=True, capture_output=True)
    return env


def raw_load(db: LocalMariaDB, path: Path) -> tuple[float, int]:
    """LOAD DATA of the plain file into 23 TEXT columns, no keys; (seconds, rows)."""
    name = "ccmirror_bench_yfcc_raw"
    with db.root_connection() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    from harvester.db import connect

    conn = connect(db.url(name), local_infile=True)
    try:
        with conn.cursor() as cur:
            columns = ", ".join(f"f{n} TEXT" for n in range(23))
            cur.execute(f"CREATE TABLE yfcc_raw ({columns}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
            began = time.monotonic()
            rows = cur.execute(
                "LOAD DATA LOCAL INFILE %s INTO TABLE yfcc_raw CHARACTER SET utf8mb4"
                r" FIELDS TERMINATED BY '\t' LINES TERMINATED BY '\n'",
                (str(path),),
            )
            conn.commit()
            seconds = time.monotonic() - began
    finally:
        conn.close()
    with db.root_connection() as root, root.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")  # frees the buffer pool for the import
    return seconds, rows


def run_import(env: dict[str, str], path: Path, chunk_lines: int) -> tuple[dict, float, float]:
    """(summary, wall seconds, peak RSS in MB) of one `harvester import-yfcc` process."""
    began = time.monotonic()
    proc = subprocess.Popen(
        [
            str(BIN / "harvester"),
            "import-yfcc",
            str(path),
            "--chunk-lines",
            str(chunk_lines),
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    out = proc.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - began
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"harvester import-yfcc failed with status {status}")
    return json.loads(out), seconds, usage.ru_maxrss / 1024


if __name__ == "__main__":
    sys.exit(main())
