"""Does the S3 push keep up with the fetch stage? Both measured on the same photos, one run.

N JPEGs of 5-20 KB made by the lab's image host (`lab.sims.image_host.server.jpeg_bytes`)
are served by a private nginx on loopback, as bench/fetch.py serves them. Each run:

- fetch: the downloader's fetch stage (`downloader fetch`'s own function, `--fetch-concurrency`
  connections, sha256 while streaming, files written flat as in the spool under `--spool`,
  tmpfs by default: its fastest, so the hardest rate for a push to keep up with);
- then the very files it wrote are pushed, each to its storage-layout key, by each of:
  - asyncio: `downloader.s3.push.push_objects`, its own SigV4 signer over the fetch's own
    asyncio HTTP client (downloader/fetch/http/), N PUTs in flight for each N of
    `--push-concurrency` (asyncio-N);
  - urllib3: the sender it replaced, the same signer over a urllib3 pool and a thread per PUT
    in flight (as downloader/s3/client.py was before; urllib3-N);
  - rsync: `downloader.push.link_tree` (the layout as hard links, as the daemon lays it out)
    then `push_tree` over SSH into a private sshd + rrsync write-only storage
    (`lab/processes/storage.py`; needs root), both timed;
  both S3 senders into a SeaweedFS cluster (`lab/processes/seaweedfs.py`: one master, one
  volume server, a filer, the S3 gateway; replication 000) through a downloader's own
  write-only identity on the object-locked images bucket, as in production.

Every stage runs in a child process; its CPU is user + system of that child and what it
waited for (ssh, rsync), from getrusage around the stage alone (not the interpreter's start),
per photo. The servers' CPU (nginx for the fetch, the weed processes for S3, sshd and its
sessions' rsync for rsync; sampled from /proc) is shown apart: it shares
these 2 cores here, where in production it runs on other machines. Each push writes the files
under a prefix of its own (hard links), so no run overwrites another's keys or files. Medians,
ranges and the ratios to the fetch stage are printed at the end.

    .venv/bin/python bench/s3_push_vs_fetch.py [--photos 5000] [--repeat 3]
        [--push-concurrency 16,64] [--spool /dev/shm]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BENCH_ROOT = Path("/var/lib/ccmirror-bench")  # root-owned 0755: sshd's StrictModes accepts it
SENDERS = ("asyncio", "urllib3")  # the S3 ones, each at every --push-concurrency
WRITER = "dl-bench"


def load_fetch_bench():
    """bench/fetch.py as a module: its nginx, image generation and URL list."""
    spec = importlib.util.spec_from_file_location(
        "bench_fetch", Path(__file__).with_name("fetch.py")
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["bench_fetch"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fetch-concurrency", type=int, default=64)
    parser.add_argument("--push-concurrency", default="16,64", help="S3 PUTs in flight: N,M,...")
    parser.add_argument(
        "--spool", type=Path, default=Path("/dev/shm"), help="where the fetch writes (tmpfs)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, json.loads(Path(args.spec).read_text()))))
        return
    if os.geteuid() != 0:
        sys.exit("bench/s3_push_vs_fetch.py: needs root (the rsync peer's sshd)")
    BENCH_ROOT.mkdir(parents=True, exist_ok=True)
    os.chmod(BENCH_ROOT, 0o755)
    scratch = Path(tempfile.mkdtemp(prefix="push-vs-fetch-", dir=BENCH_ROOT))
    os.chmod(scratch, 0o755)
    try:
        with Servers(scratch, args.photos) as servers:
            print(servers.note, flush=True)
            pushers = [f"{sender}-{n}" for n in concurrencies(args) for sender in SENDERS]
            results = {name: [] for name in ("fetch", *pushers, "rsync")}
            spool = Path(tempfile.mkdtemp(prefix="push-vs-fetch-", dir=args.spool))
            try:
                for run in range(args.repeat):
                    one_run(servers, spool, run, args, results)
            finally:
                shutil.rmtree(spool, ignore_errors=True)
            report(results, args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def concurrencies(args) -> list[int]:
    return [int(n) for n in str(args.push_concurrency).split(",")]


class Servers:
    """nginx with the photos, a SeaweedFS cluster with a downloader identity, rsync storage."""

    def __init__(self, scratch: Path, photos: int) -> None:
        self.scratch = scratch
        self.photos = photos
        self.stack: list = []

    def __enter__(self) -> Servers:
        from lab.processes.seaweedfs import ClusterSettings, start_cluster
        from lab.processes.storage import start_storage

        fetch_bench = load_fetch_bench()
        try:
            www = fetch_bench.generate_images(fetch_bench.WORK / "www-push", self.photos, (5, 20))
            port = fetch_bench.free_port()
            nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
            self.nginx = fetch_bench.start_nginx(nginx_bin, fetch_bench.WORK, www, port)
            self.stack.append(lambda: (self.nginx.terminate(), self.nginx.wait(10)))
            self.urls = fetch_bench.write_url_list(self.scratch / "urls.txt", self.photos, port)
            settings = ClusterSettings(replication="000", volume_servers=1)
            self.cluster = start_cluster(self.scratch / "weed", settings)
            self.stack.append(self.cluster.stop)
            self.s3 = writer_setting(self.cluster)
            self.storage = start_storage(self.scratch / "rsync")
            self.stack.append(self.storage.stop)
        except BaseException:
            self.__exit__()
            raise
        megabytes = fetch_bench.dir_megabytes(www)
        self.note = (
            f"{self.photos:,} JPEGs of 5-20 KB ({megabytes:.0f} MB) from nginx on 127.0.0.1:"
            f"{port}; SeaweedFS 1 master, 1 volume server, replication 000 at "
            f"{self.cluster.s3_url}; rsync storage on port {self.storage.port}; "
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start"
        )
        return self

    def pids(self, stage: str) -> list[int]:
        """The server processes a stage makes work."""
        if stage == "fetch":
            return tree_pids(self.nginx.pid)
        if stage == "rsync":
            return [self.storage.process.pid]  # sshd: its sessions and their rsyncs
        return [p.process.pid for p in self.cluster.processes() if p.process is not None]

    def __exit__(self, *exc: object) -> None:
        while self.stack:
            self.stack.pop()()


def writer_setting(cluster) -> dict:
    """The images bucket (object lock) and a downloader's write-only identity, as the
    downloader's `storage:` mapping, once the gateway accepts the key."""
    from lab.processes import seaweedfs_s3 as s3

    s3.create_images_bucket(s3.admin_client(cluster))
    key = s3.new_key()
    s3.add_identity(cluster, WRITER, key)
    setting = {
        "endpoint": cluster.s3_url,
        "bucket": s3.IMAGES_BUCKET,
        "region": s3.REGION,
        "access_key": key.access_key,
        "secret_key": key.secret_key,
    }
    probe = Path(cluster.base_dir) / "probe"
    (probe / "probes").mkdir(parents=True, exist_ok=True)
    (probe / "probes" / "bench.txt").write_text("bench\n")
    deadline = time.monotonic() + 60
    while True:  # the gateway reloads identities from the filer: poll with a deadline
        paths = {"probes/bench.txt": "probes/bench.txt"}
        spec = {"root": str(probe), "paths": paths, "s3": setting, "concurrency": 1}
        try:
            child("asyncio", spec, probe / "spec.json")
            return setting
        except ChildFailed:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def one_run(servers: Servers, scratch: Path, run: int, args, results: dict) -> None:
    """One fetch, then every pusher on the files it wrote (hard links under a prefix each)."""
    fetched = scratch / f"fetch-{run}"
    spec = {"urls": str(servers.urls), "out": str(fetched), "concurrency": args.fetch_concurrency}
    results["fetch"].append(child("fetch", spec, scratch / "spec.json", servers.pids("fetch")))
    show(run, "fetch", results["fetch"][-1])
    files = sorted(p.name for p in fetched.iterdir() if p.is_file())  # flat: <id>.<ext>
    for name in results:
        if name == "fetch":
            continue
        root = scratch / f"push-{run}-{name}"
        prefix = f"{name}-{run}-{os.getpid()}"  # keys and paths of this push only
        root.mkdir()
        subprocess.run(["cp", "-al", str(fetched), str(root / prefix)], check=True)
        spec = {
            "root": str(root),
            "paths": {f"{prefix}/{storage_key(name)}": f"{prefix}/{name}" for name in files},
            "concurrency": int(name.rsplit("-", 1)[1]) if name != "rsync" else 0,
            "s3": servers.s3,
            "rsync": {
                "spec": servers.storage.target.rstrip(":"),
                "port": servers.storage.port,
                "key": str(servers.storage.key_path),
                "known_hosts": str(servers.storage.known_hosts_path),
            },
        }
        results[name].append(child(name, spec, scratch / "spec.json", servers.pids(name)))
        show(run, name, results[name][-1])
        shutil.rmtree(root)
    shutil.rmtree(fetched)


def show(run: int, name: str, result: dict) -> None:
    print(
        f"run {run + 1} {name:11} {result['photos']:6,} photos {result['photos_per_s']:7,.0f}"
        f" photos/s  {result['cpu_ms_per_photo']:.3f} CPU ms/photo"
        f" (servers {result['server_ms_per_photo']:.3f})",
        flush=True,
    )


class ChildFailed(RuntimeError):
    pass


def child(name: str, spec: dict, spec_path: Path, server_roots: list[int] = ()) -> dict:
    """Run one stage in a child; its rates, and the servers' CPU per photo meanwhile."""
    spec_path.write_text(json.dumps(spec))
    sampler = ServerCpu(server_roots)
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--child", name, "--spec", str(spec_path)],
            capture_output=True,
            text=True,
        )
    finally:
        server = sampler.finish()
    if done.returncode != 0:
        raise ChildFailed(f"{name} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    result["server_ms_per_photo"] = server * 1000 / max(result["photos"], 1)
    return result


class ServerCpu:
    """CPU seconds the server processes (`roots` and their descendants) spent meanwhile,
    sampled from /proc every 20 ms: a session process sshd starts and ends is counted from
    its samples, since sshd itself does not account for its reaped sessions."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = list(roots)
        self.first: dict[int, int] = {pid: ticks(pid) for root in roots for pid in tree_pids(root)}
        self.last = dict(self.first)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.02):
            self._sample()

    def _sample(self) -> None:
        for root in self.roots:
            for pid in tree_pids(root):
                used = ticks(pid)
                if used >= 0:
                    self.last[pid] = used

    def finish(self) -> float:
        self.stop.set()
        self.thread.join()
        self._sample()
        spent = sum(used - self.first.get(pid, 0) for pid, used in self.last.items())
        return spent / os.sysconf("SC_CLK_TCK")


def ticks(pid: int) -> int:
    """utime + stime of `pid` in clock ticks (-1 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return -1
    return int(fields[11]) + int(fields[12])


def tree_pids(pid: int) -> list[int]:
    """`pid` and its living descendants (nginx's workers, sshd's sessions)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return pids


# ------------------------------------------------------------------ in the child
def run_child(name: str, spec: dict) -> dict:
    if name == "fetch":
        return run_fetch(spec)
    import hashlib

    root = Path(spec["root"])
    paths = spec["paths"]  # storage key -> its file under root
    # The journal knows each photo's digest from the fetch: not counted, as in the daemon.
    digests = {k: hashlib.sha256((root / f).read_bytes()).hexdigest() for k, f in paths.items()}
    pusher = {"asyncio": push_asyncio, "urllib3": push_urllib3, "rsync": push_rsync}[
        name.split("-")[0]
    ]
    prepared = pusher(root, paths, digests, spec)
    before = cpu_seconds()
    started = time.monotonic()
    stored = prepared()
    seconds = time.monotonic() - started
    cpu = cpu_seconds() - before
    assert stored == len(paths), (stored, len(paths))
    return rates(len(paths), seconds, cpu)


def run_fetch(spec: dict) -> dict:
    from ccmirror_common.hosts import HostPolicy
    from downloader.fetch.url_list import run_fetch_command

    out = Path(spec["out"])
    before = cpu_seconds()
    started = time.monotonic()
    with open(os.devnull, "w") as quiet:
        sys.stderr, stderr = quiet, sys.stderr  # its progress lines
        try:
            code = run_fetch_command(
                Path(spec["urls"]), out, spec["concurrency"], HostPolicy(["127.0.0.1"])
            )
        finally:
            sys.stderr = stderr
    seconds = time.monotonic() - started
    cpu = cpu_seconds() - before
    assert code == 0, code
    stored = sum(1 for p in out.iterdir() if p.is_file())
    return rates(stored, seconds, cpu)


def storage_key(name: str) -> str:
    """A fetched file's storage key: `<id>.<ext>` -> images/<aa>/<bb>/<id>.<ext>."""
    from ccmirror_common.layout import image_path

    photo_id, ext = name.split(".")
    return image_path(int(photo_id), ext)


def push_asyncio(root: Path, paths: dict[str, str], digests: dict, spec: dict):
    from downloader.s3.push import push_objects
    from downloader.s3.target import S3Target

    target = S3Target.from_mapping(spec["s3"])
    concurrency = spec["concurrency"]
    return lambda: (
        push_objects(
            root, paths, target, concurrency=concurrency, digests=digests
        ).files_transferred
    )


def push_urllib3(root: Path, paths: dict[str, str], digests: dict, spec: dict):
    """The replaced sender: the same signer, urllib3's pool, a thread per PUT in flight."""
    import concurrent.futures as futures

    import urllib3

    from downloader.s3.client import ObjectWriter
    from downloader.s3.target import S3Target

    writer = ObjectWriter(S3Target.from_mapping(spec["s3"]))
    concurrency = spec["concurrency"]
    pool = urllib3.PoolManager(
        num_pools=1,
        maxsize=concurrency,
        block=True,
        retries=urllib3.Retry(total=1, redirect=0, status=0, backoff_factor=0),
        timeout=urllib3.Timeout(connect=10, read=120),
    )

    def put(key: str) -> int:
        with open(root / paths[key], "rb") as body:
            size = body.seek(0, 2)
            body.seek(0)
            url, headers = writer.signed_put(key, digests[key], size)
            response = pool.urlopen("PUT", url, body=body, headers=headers, redirect=False)
        if response.status != 200:
            raise RuntimeError(f"{key}: {response.status} {response.data[:200]!r}")
        return size

    def run() -> int:
        stored = 0
        todo = iter(paths)
        with futures.ThreadPoolExecutor(concurrency) as threads:
            running = {threads.submit(put, k) for k in [next(todo) for _ in range(concurrency)]}
            while running:
                done, running = futures.wait(running, return_when=futures.FIRST_COMPLETED)
                for future in done:
                    future.result()
                    stored += 1
                    key = next(todo, None)
                    if key is not None:
                        running.add(threads.submit(put, key))
        return stored

    return run


def push_rsync(root: Path, paths: dict[str, str], digests: dict, spec: dict):
    from downloader.push import StorageTarget, link_tree, push_tree

    rsync = spec["rsync"]
    target = StorageTarget.from_spec(
        rsync["spec"], port=rsync["port"], key_path=rsync["key"],
        known_hosts_path=rsync["known_hosts"],
    )  # fmt: skip
    layout = root.with_name(root.name + "-layout")
    return lambda: push_tree(layout, link_tree(root, paths, layout), target).files_transferred


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def rates(photos: int, seconds: float, cpu: float) -> dict:
    return {
        "photos": photos,
        "photos_per_s": photos / seconds,
        "cpu_ms_per_photo": cpu * 1000 / max(photos, 1),
    }


# ------------------------------------------------------------------ the verdict
def report(results: dict[str, list[dict]], args) -> None:
    def values(name: str, key: str) -> list[float]:
        return [r[key] for r in results[name]]

    def spread(numbers: list[float], fmt: str) -> str:
        low, high = format(min(numbers), fmt), format(max(numbers), fmt)
        return f"{format(statistics.median(numbers), fmt)} ({low}-{high})"

    print(
        f"\n{args.photos:,} photos of 5-20 KB, {args.repeat} runs: medians (ranges); "
        f"fetch at {args.fetch_concurrency} connections into {args.spool}; S3 name-N: N in "
        f"flight; load average {os.getloadavg()[0]:.1f} at the end"
    )
    for name in results:
        print(
            f"{name:11} {spread(values(name, 'photos_per_s'), ',.0f')} photos/s  "
            f"{spread(values(name, 'cpu_ms_per_photo'), '.3f')} CPU ms/photo, "
            f"servers {spread(values(name, 'server_ms_per_photo'), '.3f')}"
        )
    fetch_cpu = statistics.median(values("fetch", "cpu_ms_per_photo"))
    for name in list(results)[1:]:
        pairs = zip(values(name, "photos_per_s"), values("fetch", "photos_per_s"), strict=True)
        rate = [push / fetch for push, fetch in pairs]
        print(
            f"{name:11} / fetch: {spread(rate, '.2f')}x the photos/s (same run), "
            f"{statistics.median(values(name, 'cpu_ms_per_photo')) / fetch_cpu:.2f}x the CPU"
            f" per photo ({'keeps up' if statistics.median(rate) >= 1 else 'does NOT keep up'})"
        )
    # Where each side's cores would be its own (a fleet): the downloader's one core bounds
    # its stage at 1 / (its CPU per photo); the store needs its CPU per PUT times the rate.
    fetch_rate = statistics.median(values("fetch", "photos_per_s"))
    s3_pushers = [name for name in results if name not in ("fetch", "rsync")]
    print(f"one downloader core: fetch {1000 / fetch_cpu:,.0f} photos/s", end="")
    for name in s3_pushers:
        cpu = statistics.median(values(name, "cpu_ms_per_photo"))
        print(f", {name} {1000 / cpu:,.0f} ({fetch_cpu / cpu:.2f}x the fetch)", end="")
    print()
    for name in s3_pushers:
        store = statistics.median(values(name, "server_ms_per_photo"))
        print(
            f"{name:11}: the store spent {store:.2f} ms of CPU per PUT: "
            f"{fetch_rate * store / 1000:.1f} cores of it keep up with this fetch's "
            f"{fetch_rate:,.0f} photos/s"
        )
    rsync = statistics.median(values("rsync", "photos_per_s"))
    rsync_cpu = statistics.median(values("rsync", "cpu_ms_per_photo"))
    for name in list(results)[1:-1]:
        rate = statistics.median(values(name, "photos_per_s"))
        cpu = statistics.median(values(name, "cpu_ms_per_photo"))
        print(
            f"{name:11} / rsync: {rate / rsync:.2f}x the photos/s, {cpu / rsync_cpu:.2f}x the CPU"
        )


if __name__ == "__main__":
    main()
