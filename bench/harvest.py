"""Harvest benchmark: photos ingested per second, and API calls against the ideal ceil(n/500).

Runs real `harvester work` processes against the Flickr simulator (rate limit lifted) on a
universe dense with hot spots (ten-minute windows over the cap, single seconds over the cap),
into a private MariaDB, and prints:

- photos/s: unique CC photos stored per second of wall time, against the 20,000/s target;
- calls/ideal: search calls the simulator answered, against ceil(n / 500) for n unique photos.

It runs once per stride (the default 600 s of the old system, and one day), since the stride
is what decides how many near-empty slices cost a call each.

    .venv/bin/python bench/harvest.py [--days 2] [--workers 2] [--strides 600,86400]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.processes.mariadb import LocalMariaDB
from lab.sims.flickr.process import RunningSim, spawn

BIN = Path(sys.executable).parent
TARGET_PHOTOS_PER_SECOND = 20_000
START = 1609459200  # 2021-01-01
UNIVERSE = [
    "--seed",
    "11",
    "--start",
    "2021-01-01",
    "--end",
    "2021-02-01",
    "--density",
    "300",
    "--hot-window-every",
    "12",
    "--hot-second-every",
    "144",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--strides", default="600,86400")
    args = parser.parse_args()

    db = LocalMariaDB(Path(tempfile.gettempdir()) / "ccmirror-bench-mariadb", port=13308)
    db.ensure_running()
    sim = spawn("--rate-limit", "0", *UNIVERSE, key="bench-key")
    try:
        end = START + args.days * 86400
        truth = len(sim.truth(START, end - 1))
        hot = sim.get("/_sim/hotspots", min_upload_date=START, max_upload_date=end - 1)
        hot = hot["hotspots"]
        print(
            f"universe: {args.days} days, {truth:,} CC photos, "
            f"{sum(h['kind'] == 'window' for h in hot)} hot windows, "
            f"{sum(h['kind'] == 'second' for h in hot)} hot seconds; "
            f"{args.workers} workers on {os.cpu_count()} cores"
        )
        for stride in (int(s) for s in args.strides.split(",")):
            run(db, sim, stride, args, truth)
    finally:
        sim.stop()
    return 0


def run(db: LocalMariaDB, sim: RunningSim, stride: int, args, truth: int) -> None:
    name = f"ccmirror_bench_{stride}"
    db.fresh_database(name)
    env = dict(
        os.environ,
        CCMIRROR_DB_URL=db.url(name),
        CCMIRROR_FLICKR_API_URL=sim.api_url,
        CCMIRROR_FLICKR_API_KEY="bench-key",
        CCMIRROR_FLICKR_RATE_LIMIT="0",
    )
    harvester = str(BIN / "harvester")
    subprocess.run([harvester, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    end = START + args.days * 86400
    subprocess.run(
        [
            harvester,
            "seed",
            "timeslices",
            "--start",
            str(START),
            "--end",
            str(end),
            "--stride",
            str(stride),
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    calls_before = sim.search_calls()
    began = time.monotonic()
    workers = [
        subprocess.Popen(
            [harvester, "work", "--worker", f"bench-{n}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in range(args.workers)
    ]
    worker_cpu = 0.0
    for worker in workers:
        _, status, usage = os.wait4(worker.pid, 0)
        worker.returncode = os.waitstatus_to_exitcode(status)
        worker_cpu += usage.ru_utime + usage.ru_stime
    seconds = time.monotonic() - began
    calls = sim.search_calls() - calls_before
    with db.root_connection(database=name) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM flickr_timeslice_photos")
        stored = cur.fetchone()[0]
    ideal = math.ceil(stored / 500)
    rate = stored / seconds
    print(
        f"stride {stride:>6}s: {stored:,} photos ({'exact' if stored == truth else 'MISMATCH'})"
        f" in {seconds:.1f}s = {rate:,.0f} photos/s"
        f" = {rate / TARGET_PHOTOS_PER_SECOND:.2f}x the {TARGET_PHOTOS_PER_SECOND:,}/s target;"
        f" {calls:,} search calls / ideal {ideal:,} = {calls / ideal:.3f}x"
    )
    print(
        f"{'':>15}harvester CPU {worker_cpu * 1e6 / stored:.0f} us per photo"
        f" ({worker_cpu / seconds:.2f} of {os.cpu_count()} cores; the simulator and MariaDB"
        " share the rest)"
    )


if __name__ == "__main__":
    sys.exit(main())
