"""Queue service benchmark: lease + complete round trips over HTTP, in photos per second.

A catalog of 1M and then 10M pending photos (`lab.mission.catalog_images`), one `harvester serve`
process, and 8 clients (threads, each with its own keep-alive connection and worker token)
that lease 500 photos, report all of them stored, and go again, for a fixed time. The clients
share these 2 cores with the service and MariaDB, so they use http.client rather than
requests: on droplets their CPU is not the service's. Printed per size:
photos/s against the 20,000/s target, round trips, the service's CPU and peak RSS (limit
200 MB); then the 10M/1M rate ratio (target: at most 20% slower at 10M).

    .venv/bin/python bench/queue_service.py [--sizes 1000000,10000000] [--seconds 20] [--clients 8]
        [--flush-log-at-trx-commit 1]   (1: durable commits, as salt/db sets it; 2: the OS's cache)
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from harvester.db import connect
from harvester.migrate import migrate
from lab.mission.catalog_images import fill_images
from lab.processes.mariadb import LocalMariaDB
from lab.processes.queue import RunningQueue, spawn

TARGET_PER_SECOND = 20_000
RSS_LIMIT_MB = 200
DIGEST = hashlib.sha256(b"bench").hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--buffer-pool-mb", type=int, default=4096)
    # 1 as db-1 runs it (salt/db/defaults.yaml): every commit on disk before its answer.
    parser.add_argument("--flush-log-at-trx-commit", type=int, choices=(0, 1, 2), default=1)
    args = parser.parse_args()
    # A server of its own: the other benchmarks' servers may be busy.
    db = LocalMariaDB(Path(tempfile.gettempdir()) / "ccmirror-bench-queue-mariadb", port=13309)
    db.ensure_running()
    db.set_globals(
        innodb_buffer_pool_size=args.buffer_pool_mb << 20,
        innodb_flush_log_at_trx_commit=args.flush_log_at_trx_commit,
    )
    print(f"MariaDB: innodb_flush_log_at_trx_commit={args.flush_log_at_trx_commit}")
    rates = {}
    for n in (int(s) for s in args.sizes.split(",")):
        rates[n] = run(db, n, args)
    sizes = sorted(rates)
    if len(sizes) > 1:
        ratio = rates[sizes[-1]] / rates[sizes[0]]
        print(
            f"rate at {sizes[-1]:,} vs {sizes[0]:,} photos: {ratio:.2f}x"
            f" (target >= 0.80x: at most 20% slower)"
        )
    return 0


def run(db: LocalMariaDB, n: int, args: argparse.Namespace) -> float:
    name = f"ccmirror_bench_queue_{n}"
    conn = connect(db.fresh_database(name))
    migrate(conn)
    began = time.monotonic()
    fill_images(conn, n)
    conn.close()
    print(f"{n:,} photos: catalog filled in {time.monotonic() - began:.0f}s")
    settle(db)
    workers = [f"dl-{i}" for i in range(1, args.clients + 1)]
    with tempfile.TemporaryDirectory() as workdir:
        queue = spawn(db.url(name), Path(workdir), workers)
        try:
            rate = measure(queue, workers, args, int(db.pidfile.read_text()))
        finally:
            queue.stop()
    db.drop_database(name)
    return rate


SETTLE_SECONDS = 180
SETTLED_DIRTY_PAGES = 2_000  # 16 KB pages: ~30 MB left to write


def settle(db: LocalMariaDB) -> None:
    """Let InnoDB write out the bulk fill before measuring: flushing millions of new rows
    would otherwise share the 2 cores with the queue (the 10M fill leaves ~10x the 1M's),
    and the rates would measure the fill's aftermath, not the queue."""
    began = time.monotonic()
    with db.root_connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.innodb_max_dirty_pages_pct")
        (configured,) = cur.fetchone()
        cur.execute("SET GLOBAL innodb_max_dirty_pages_pct = 0")  # flush now, at full speed
        try:
            while time.monotonic() - began < SETTLE_SECONDS:
                cur.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
                if int(cur.fetchone()[1]) < SETTLED_DIRTY_PAGES:
                    break
                time.sleep(0.5)
        finally:
            cur.execute(f"SET GLOBAL innodb_max_dirty_pages_pct = {float(configured)}")
    print(f"  fill written out in {time.monotonic() - began:.0f}s")


def measure(
    queue: RunningQueue, workers: list[str], args: argparse.Namespace, mariadb_pid: int
) -> float:
    # A short warm-up so that connections, caches and the thread pool exist.
    done = [0] * len(workers)
    trips = [0] * len(workers)
    errors: list[str] = []
    warm_until = time.monotonic() + 2
    stop_at = warm_until + args.seconds
    counting = threading.Event()

    def client(index: int) -> None:
        host, port = queue.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        headers = queue.headers(workers[index]) | {"Content-Type": "application/json"}

        def post(path: str, body: object) -> tuple[int, bytes]:
            connection.request("POST", path, json.dumps(body), headers)
            answer = connection.getresponse()
            return answer.status, answer.read()

        lease_request = {"max_items": args.batch}
        while time.monotonic() < stop_at:
            status, text = post("/v1/leases", lease_request)
            body = json.loads(text) if status == 200 else {}
            if not body.get("items"):
                errors.append(f"lease: {status} {text[:200]!r}")
                return
            report = [
                {
                    "id": item["id"],
                    "result": "stored",
                    "sha256": DIGEST,
                    "bytes": 1000,
                    "path": f"{item['photo_id']}.jpg",
                }
                for item in body["items"]
            ]
            status, text = post(f"/v1/leases/{body['lease_id']}/complete", {"items": report})
            if status != 200:
                errors.append(f"complete: {status} {text[:200]!r}")
                return
            if counting.is_set():
                done[index] += len(report)
                trips[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    time.sleep(max(warm_until - time.monotonic(), 0))
    counting.set()
    began = time.monotonic()
    cpu_before = [process_cpu(pid) for pid in (queue.process.pid, mariadb_pid)]
    clients_before = time.process_time()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - began
    cpu, db_cpu = (
        process_cpu(pid) - b
        for pid, b in zip((queue.process.pid, mariadb_pid), cpu_before, strict=True)
    )
    clients_cpu = time.process_time() - clients_before
    if errors:
        raise SystemExit(f"benchmark failed: {errors[0]}")
    rate = sum(done) / seconds
    print(
        f"  {len(workers)} clients, batches of {args.batch}: {sum(done):,} photos in"
        f" {sum(trips):,} lease+complete round trips in {seconds:.1f}s = {rate:,.0f} photos/s"
        f" = {rate / TARGET_PER_SECOND:.2f}x the {TARGET_PER_SECOND:,}/s target;"
        f" service peak RSS {peak_rss_mb(queue):.0f} MB (limit {RSS_LIMIT_MB} MB)"
    )
    photos = max(sum(done), 1)
    print(
        "  CPU per photo: "
        + ", ".join(
            f"{name} {1e6 * used / photos:.0f} us ({used / seconds:.2f} cores)"
            for name, used in (("service", cpu), ("MariaDB", db_cpu), ("clients", clients_cpu))
        )
    )
    return rate


def process_cpu(pid: int) -> float:
    """CPU seconds a process has used (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / 100.0


def peak_rss_mb(queue: RunningQueue) -> float:
    for line in Path(f"/proc/{queue.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


if __name__ == "__main__":
    sys.exit(main())
