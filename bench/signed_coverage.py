"""Coverage of signed against unsigned harvests (#21): the share of the universe's CC photos
each finds, by safety level, and its search calls against the ideal ceil(n/500).

Flickr shows unsigned calls safe photos only ("Un-authed calls can only see Safe content");
the simulator's universe here has 10% moderate and 5% restricted CC photos, as the issue
asks. The same day is harvested twice into a private MariaDB by real `harvester work`
processes: once with the key alone, once with the key, its secret and an access token
(OAuth 1.0a, checked by the simulator). Throw-away credentials are made per run.

    .venv/bin/python bench/signed_coverage.py [--days 1] [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from secrets import token_hex

from lab.processes.mariadb import LocalMariaDB
from lab.sims.flickr.process import RunningSim, spawn

BIN = Path(sys.executable).parent
START = 1609459200  # 2021-01-01
KEY = "bench-key"
LEVELS = {1: "safe", 3: "with moderate and restricted"}  # safe_search of /_sim/truth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1, help="the counts are deterministic")
    args = parser.parse_args()
    end = START + args.days * 86400
    db = LocalMariaDB(Path(tempfile.gettempdir()) / "ccmirror-bench-mariadb", port=13308)
    db.ensure_running()
    with tempfile.TemporaryDirectory() as scratch:
        signing = _credentials(Path(scratch))
        sim = spawn(
            "--rate-limit", "0", "--seed", "21", "--start", "2021-01-01", "--end", "2021-02-01",
            "--moderate-share", "0.10", "--restricted-share", "0.05",
            "--credentials", str(Path(scratch) / "sim.json"), key=KEY,
        )  # fmt: skip
        try:
            truth = {level: _truth(sim, end, level) for level in LEVELS}
            every = truth[3]
            print(
                f"universe: {args.days} day(s), {len(every):,} CC photos,"
                f" {len(truth[1]):,} safe ({len(truth[1]) / len(every):.1%})"
            )
            for run in range(1, args.runs + 1):
                for name, extra in (("unsigned", {}), ("signed", signing)):
                    found, calls = _harvest(db, sim, end, f"ccmirror_bench_{name}", extra)
                    ideal = math.ceil(len(found) / 500)
                    print(
                        f"run {run} {name:>8}: {len(found & every):,}/{len(every):,} CC photos"
                        f" = {len(found & every) / len(every):.1%}"
                        f" (safe {len(found & truth[1]):,}/{len(truth[1]):,});"
                        f" {calls:,} search calls / ideal {ideal:,} = {calls / ideal:.3f}x"
                    )
        finally:
            sim.stop()
    return 0


def _credentials(scratch: Path) -> dict[str, str]:
    """The simulator's credentials file, and the harvester's settings that sign with them."""
    secret, token, token_secret = token_hex(8), f"72157{token_hex(6)}-{token_hex(8)}", token_hex(8)
    sim_file = scratch / "sim.json"
    sim_file.touch(mode=0o600)
    sim_file.write_text(
        json.dumps({"keys": {KEY: secret}, "tokens": {token: {"key": KEY, "secret": token_secret}}})
    )
    return {
        "CCMIRROR_FLICKR_API_SECRET": secret,
        "CCMIRROR_FLICKR_OAUTH_TOKEN": token,
        "CCMIRROR_FLICKR_OAUTH_TOKEN_SECRET": token_secret,
    }


def _truth(sim: RunningSim, end: int, safe_search: int) -> set[int]:
    answer = sim.get(
        "/_sim/truth", min_upload_date=START, max_upload_date=end - 1, safe_search=safe_search
    )
    return set(answer["ids"])


def _harvest(
    db: LocalMariaDB, sim: RunningSim, end: int, name: str, extra: dict[str, str]
) -> tuple[set[int], int]:
    """The photo ids one worker harvests of [START, end) in a fresh database, and the
    search calls it made."""
    db.fresh_database(name)
    env = dict(
        os.environ,
        CCMIRROR_DB_URL=db.url(name),
        CCMIRROR_FLICKR_API_URL=sim.api_url,
        CCMIRROR_FLICKR_API_KEY=KEY,
        CCMIRROR_FLICKR_RATE_LIMIT="0",
        **extra,
    )
    harvester = str(BIN / "harvester")
    quiet = {"env": env, "check": True, "stdout": subprocess.DEVNULL}
    subprocess.run([harvester, "migrate"], **quiet)
    seed = ["seed", "timeslices", "--start", str(START), "--end", str(end), "--stride", "86400"]
    subprocess.run([harvester, *seed], **quiet)
    before = sim.search_calls()
    subprocess.run([harvester, "work", "--worker", "bench-1"], **quiet, stderr=subprocess.DEVNULL)
    calls = sim.search_calls() - before
    with db.root_connection(database=name) as conn, conn.cursor() as cur:
        cur.execute("SELECT photo_id FROM flickr_timeslice_photos")
        return {row[0] for row in cur.fetchall()}, calls


if __name__ == "__main__":
    sys.exit(main())
