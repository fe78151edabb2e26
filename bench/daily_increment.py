"""Daily increment benchmark (#21): the search calls one day of new uploads costs, against the
ideal ceil(new / 500), and where any extra calls go.

Against the Flickr simulator (rate limit lifted) and a private MariaDB, with real `harvester`
processes: day D-1 is seeded by `seed increment` and harvested (the catalog "up to day D"),
then `seed increment --now` one day and the lag later seeds day D, and `harvester work` walks
it. The simulator's universe ends after day D (`--end`), so the day is there whatever today is.
Prints the calls for day D, the ideal, the ratio (#21 wants within 1.05x), and the calls by
kind of task: the day's slice, and the children split off a second too dense to walk under
Flickr's 4,000-results cap (each has its own partial last page), with the results read twice.

    .venv/bin/python bench/daily_increment.py [--day 2021-01-10] [--seed 11] [--density 300]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lab.processes.mariadb import LocalMariaDB
from lab.sims.flickr.process import spawn

BIN = Path(sys.executable).parent
DAY = 86400
LAG_HOURS = 24


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--day", default="2021-01-10", help="day D, the new uploads (UTC)")
    parser.add_argument("--seed", type=int, default=11, help="the simulated universe's seed")
    parser.add_argument("--density", default="300", help="mean photos per 10 minutes")
    parser.add_argument("--hot-window-every", default="144", help="buckets (144: one a day)")
    parser.add_argument("--hot-second-every", default="144", help="buckets (144: one a day)")
    parser.add_argument("--port", type=int, default=13308, help="the bench's MariaDB port")
    parser.add_argument("--db-dir", type=Path, help="its directory (a tests' MariaDB's is fine)")
    args = parser.parse_args()

    day = datetime.fromisoformat(args.day).replace(tzinfo=UTC)
    new_day = int(day.timestamp())
    universe = [
        *("--seed", str(args.seed), "--density", args.density),
        *("--start", (day - timedelta(days=1)).date().isoformat()),
        *("--end", (day + timedelta(days=1)).date().isoformat()),
        *("--hot-window-every", args.hot_window_every),
        *("--hot-second-every", args.hot_second_every),
    ]
    db_dir = args.db_dir or Path(tempfile.gettempdir()) / "ccmirror-bench-mariadb"
    db = LocalMariaDB(db_dir, port=args.port)
    db.ensure_running()
    sim = spawn("--rate-limit", "0", *universe, key="bench-key")
    try:
        name = "ccmirror_bench_increment"
        db.fresh_database(name)
        config = Path(tempfile.mkdtemp()) / "harvester.yaml"
        config.write_text(f"increment: {{start: {new_day - DAY}, lag_hours: {LAG_HOURS}}}\n")
        env = dict(
            os.environ,
            CCMIRROR_CONFIG=str(config),
            CCMIRROR_DB_URL=db.url(name),
            CCMIRROR_FLICKR_API_URL=sim.api_url,
            CCMIRROR_FLICKR_API_KEY="bench-key",
            CCMIRROR_FLICKR_RATE_LIMIT="0",
        )
        harvester(env, "migrate")
        harvester(env, "seed", "increment", "--now", str(new_day + LAG_HOURS * 3600))
        harvester(env, "work", "--worker", "bench-1")  # the catalog up to day D
        harvester(env, "seed", "increment", "--now", str(new_day + DAY + LAG_HOURS * 3600))
        before = sim.search_calls()
        harvester(env, "work", "--worker", "bench-1")
        calls = sim.search_calls() - before
        truth = sim.truth(new_day, new_day + DAY - 1)
        with db.root_connection(database=name) as conn, conn.cursor() as cur:
            report(cur, new_day, calls, truth, args)
    finally:
        sim.stop()
    return 0


def harvester(env: dict[str, str], *args: str) -> None:
    subprocess.run([str(BIN / "harvester"), *args], env=env, check=True, stdout=subprocess.DEVNULL)


def report(cur, new_day: int, calls: int, truth: set[int], args) -> None:
    cur.execute(
        "SELECT photo_id FROM flickr_timeslice_photos WHERE uploaded_at BETWEEN %s AND %s",
        (new_day, new_day + DAY - 1),
    )
    stored = {row[0] for row in cur.fetchall()}
    cur.execute(
        "SELECT parent_id IS NULL, COUNT(*), SUM(api_calls), SUM(photos_seen) FROM search_tasks"
        " WHERE min_upload >= %s GROUP BY 1 ORDER BY 1 DESC",
        (new_day,),
    )
    kinds = {bool(top): (int(n), int(c), int(p)) for top, n, c, p in cur.fetchall()}
    ideal = math.ceil(len(stored) / 500)
    slices, _, slice_seen = kinds.get(True, (0, 0, 0))  # its calls: + the licenses call
    children, child_calls, child_seen = kinds.get(False, (0, 0, 0))
    slice_calls = calls - child_calls
    print(
        f"day {datetime.fromtimestamp(new_day, UTC).date()} (seed {args.seed}, density"
        f" {args.density}/10min): {len(stored):,} new CC photos"
        f" ({'exact' if stored == truth else 'MISMATCH'}); {calls} search calls / ideal"
        f" {ideal} = {calls / ideal:.3f}x"
    )
    print(
        f"  {slices} day slice(s): {slice_calls} calls; {children} license-split children of a"
        f" dense second: {child_calls} calls; results read twice:"
        f" {slice_seen + child_seen - len(stored):,} ({(slice_seen + child_seen) / 500:.1f}"
        " pages' worth read in all)"
    )


if __name__ == "__main__":
    sys.exit(main())
