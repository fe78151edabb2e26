"""Re-check benchmark: stored photos re-checked per API call, against the ideal of one
`flickr.photos.getInfo` per photo.

Harvests a universe into a private MariaDB with the real `harvester` (simulator, rate limit
lifted), marks every catalogued photo stored, then has the simulator delete, make private
and relabel (All Rights Reserved) a share of them, and runs `harvester recheck --once`. It
prints photos re-checked per call (search sweep + getInfo for what the sweep misses), the
share of calls that were getInfo, whether the flags are exactly the changes made, and what
the rate means at Flickr's 3,600 calls an hour per key.

    .venv/bin/python bench/recheck.py [--hours 6] [--changed 0.05] [--density 60]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.processes.mariadb import LocalMariaDB
from lab.sims.flickr.process import RunningSim, spawn

BIN = Path(sys.executable).parent
START = 1609459200  # 2021-01-01
CALLS_PER_HOUR = 3600  # Flickr's limit per key


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=6)
    parser.add_argument("--changed", type=float, default=0.05, help="share of photos changed")
    parser.add_argument("--density", default="60", help="photos per 10 minutes (simulator)")
    parser.add_argument("--db-port", type=int, default=13308, help="the bench MariaDB's port")
    parser.add_argument(
        "--db-dir", type=Path, default=Path(tempfile.gettempdir()) / "ccmirror-bench-mariadb"
    )
    args = parser.parse_args()
    db = LocalMariaDB(args.db_dir, port=args.db_port)
    db.ensure_running()
    universe = ("--seed", "5", "--start", "2021-01-01", "--end", "2021-01-03",
                "--density", args.density, "--hot-window-every", "0",
                "--hot-second-every", "0")  # fmt: skip
    sim = spawn("--rate-limit", "0", *universe, key="bench-key")
    try:
        run(db, sim, args)
    finally:
        sim.stop()
    return 0


def run(db: LocalMariaDB, sim: RunningSim, args) -> None:
    name = "ccmirror_bench_recheck"
    db.fresh_database(name)
    env = dict(os.environ, CCMIRROR_DB_URL=db.url(name), CCMIRROR_FLICKR_API_URL=sim.api_url,
               CCMIRROR_FLICKR_API_KEY="bench-key", CCMIRROR_FLICKR_RATE_LIMIT="0")  # fmt: skip
    end = START + args.hours * 3600
    for command in (
        ["migrate"],
        ["seed", "timeslices", "--start", str(START), "--end", str(end), "--stride", "3600"],
        ["work", "--worker", "bench"],
        ["reconcile"],
    ):
        subprocess.run([str(BIN / "harvester"), *command], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    with db.root_connection(database=name) as conn, conn.cursor() as cur:
        cur.execute("UPDATE images SET state = 'stored'")
        cur.execute(
            "INSERT INTO stored_images (image_id, sha256, bytes, path, worker, lease_id,"
            " stored_at) SELECT id, UNHEX(SHA2(id, 256)), 1, CONCAT('images/', id), 'bench', 1,"
            " NOW(6) FROM images"
        )
        conn.commit()
        cur.execute("SELECT photo_id FROM images ORDER BY photo_id")
        photos = [int(r[0]) for r in cur.fetchall()]
    changed = random.Random(5).sample(photos, round(len(photos) * args.changed))
    kinds = ("deleted", "private", 0)
    changes = {p: kinds[n % 3] for n, p in enumerate(changed)}
    answer = sim.change_photos(changes)
    answer.raise_for_status()
    before = sim.get("/_sim/stats")["calls"]
    began = time.monotonic()
    subprocess.run([str(BIN / "harvester"), "recheck", "--once"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    seconds = time.monotonic() - began
    after = sim.get("/_sim/stats")["calls"]
    info = after.get("flickr.photos.getInfo", 0) - before.get("flickr.photos.getInfo", 0)
    search = after.get("flickr.photos.search", 0) - before.get("flickr.photos.search", 0)
    with db.root_connection(database=name) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM image_checks WHERE checked_at IS NOT NULL")
        checked = cur.fetchone()[0]
        cur.execute("SELECT i.photo_id FROM image_flags f JOIN images i ON i.id = f.image_id")
        flagged = {int(r[0]) for r in cur.fetchall()}
    calls = info + search
    per_call = checked / calls
    print(
        f"{len(photos):,} stored photos over {args.hours} h of uploads,"
        f" {len(changed):,} changed ({args.changed:.0%}: deleted, private, not CC)"
    )
    print(
        f"recheck --once: {checked:,} photos in {calls:,} calls ({search:,} search,"
        f" {info:,} getInfo) = {per_call:.1f} photos/call = {per_call:.1f}x the ideal of 1"
        f" getInfo per photo; {seconds:.1f}s;"
        f" flags {'exact' if flagged == set(changed) else 'MISMATCH'}"
    )
    per_day = per_call * CALLS_PER_HOUR * 24
    print(
        f"at {CALLS_PER_HOUR:,} calls/h per key: {per_day:,.0f} photos/day, a 500M-photo"
        f" catalog every {500e6 / per_day:,.0f} days per key (getInfo alone:"
        f" {500e6 / (CALLS_PER_HOUR * 24):,.0f} days)"
    )


if __name__ == "__main__":
    sys.exit(main())
