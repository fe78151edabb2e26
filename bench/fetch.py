"""Fetch benchmark: `downloader fetch` against img2dataset on the same local nginx, one run.

A private nginx (its own config, a loopback port) serves 20,000 generated JPEGs of 20-100 KB
(`--kb 5-20` for small ones, as in the issue's first measurement)
at Flickr-shaped paths. Both tools fetch the same URL list, compute sha256 and write files:

- `downloader fetch --concurrency 64` (one process, one event loop, downloader/fetch/http/);
- img2dataset with processes_count=2, thread_count=64, output_format=files, resize_mode=no,
  compute_hash=sha256, otherwise its defaults (`--peer-lean` adds disable_all_reencoding and
  no EXIF, its cheapest mode).

Every run writes into a directory of its own, and all outputs are removed only after the last
run: deleting 20,000 files and their directories leaves the filesystem work (journal, discards)
that slowed whichever run came next, by up to twice its system time.

Each is a child process; its CPU seconds (user + system, its reaped children included) and
peak RSS come from wait4(), and the whole process tree's RSS is sampled from /proc too. It
prints images/s, CPU-ms per image and peak RSS per run, then the medians, spreads and ratios
against the targets: >= 3x img2dataset's images/s, <= 0.25x its CPU per image, <= 100 MB.

As root the benchmark re-runs itself in a network namespace of its own (`unshare --net`,
loopback only), so nothing can reach the internet; otherwise it relies on the URL list.

    .venv/bin/python bench/fetch.py [--images 20000] [--repeat 3] [--peer-lean]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lab.processes.child import free_port
from lab.sims.image_host.server import jpeg_bytes

BIN = Path(sys.executable).parent
WORK = Path(tempfile.gettempdir()) / "ccmirror-bench-fetch"
TARGET_RATE = 3.0
TARGET_CPU = 0.25
TARGET_RSS_MB = 100
NETNS_MARK = "CCMIRROR_BENCH_NETNS"


@dataclass
class Run:
    tool: str
    images: int  # stored and accounted for
    seconds: float
    cpu_seconds: float
    sys_seconds: float  # the kernel's share of cpu_seconds: sockets, page cache, file creation
    peak_rss_mb: float  # the largest process's high-water mark (VmHWM)
    tree_rss_mb: float  # the most the whole process tree held at once (sum of VmRSS)

    @property
    def rate(self) -> float:
        return self.images / self.seconds

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_seconds / max(self.images, 1)

    def line(self) -> str:
        return (
            f"{self.tool:12} {self.images:>7,} images in {self.seconds:6.2f}s  "
            f"{self.rate:7,.0f} images/s  {self.cpu_ms:5.2f} CPU-ms/image "
            f"({1000 * self.sys_seconds / max(self.images, 1):4.2f} sys)  "
            f"peak RSS {self.peak_rss_mb:4.0f} MB (process tree {self.tree_rss_mb:4.0f} MB)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--peer-lean", action="store_true", help="img2dataset's cheapest mode")
    parser.add_argument("--kb", default="20-100", help="JPEG sizes in KB, MIN-MAX (20-100)")
    args = parser.parse_args()
    kb = tuple(int(x) for x in args.kb.split("-", 1))
    isolate_network()
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx_bin).exists():
        sys.exit("bench/fetch.py: nginx is missing (apt-get install nginx-light)")
    # find_spec, not import: img2dataset's imports would grow this process, and its children's
    # wait4 peak RSS starts from their parent's.
    if importlib.util.find_spec("img2dataset") is None:
        sys.exit("bench/fetch.py: img2dataset is missing (.venv/bin/pip install -e '.[bench]')")

    www = generate_images(WORK / "www", args.images, kb)
    outputs = WORK / "out"
    shutil.rmtree(outputs, ignore_errors=True)  # an interrupted earlier run's
    for old in ("out-dl", "out-i2d"):  # where earlier versions of this benchmark wrote
        shutil.rmtree(WORK / old, ignore_errors=True)
    os.sync()
    port = free_port()
    nginx = start_nginx(nginx_bin, WORK, www, port)
    try:
        urls = write_url_list(WORK / "urls.txt", args.images, port)
        print(
            f"{args.images:,} JPEGs ({dir_megabytes(www):,.0f} MB) from nginx on 127.0.0.1:{port};"
            f" {os.cpu_count()} cores (shared); {network_note()}"
        )
        runs: dict[str, list[Run]] = {"downloader": [], "img2dataset": []}
        for n in range(args.repeat):
            runs["downloader"].append(run_downloader(urls, outputs / f"dl-{n}", args.concurrency))
            print(runs["downloader"][-1].line(), flush=True)
            runs["img2dataset"].append(run_img2dataset(urls, outputs / f"i2d-{n}", args.peer_lean))
            print(runs["img2dataset"][-1].line(), flush=True)
        summarize(runs)
    finally:
        nginx.terminate()
        nginx.wait(10)
        shutil.rmtree(outputs, ignore_errors=True)
    return 0


# ------------------------------------------------------------------ no internet, ever
def isolate_network() -> None:
    """Re-run in a fresh network namespace (only `lo`) when root can make one."""
    if os.environ.get(NETNS_MARK) == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        return
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return
    env = {**os.environ, NETNS_MARK: "1"}
    command = ["unshare", "--net", "--", sys.executable, *sys.argv]
    os.execvpe("unshare", command, env)


def network_note() -> str:
    if os.environ.get(NETNS_MARK) == "1":
        return "private network namespace, loopback only"
    return "host network (not root: no private namespace)"


# ------------------------------------------------------------------ the served images
def image_size(photo_id: int, kb: tuple[int, int]) -> int:
    low, high = kb[0] * 1000, kb[1] * 1000
    return low + (photo_id * 7919) % max(high - low, 1)  # spread evenly over the range


def photo_ids(count: int) -> range:
    return range(50_000_000_000, 50_000_000_000 + count)


def generate_images(www: Path, count: int, kb: tuple[int, int]) -> Path:
    marker = www / f".complete-{count}-{kb[0]}-{kb[1]}kb"
    if marker.exists():
        return www
    shutil.rmtree(www, ignore_errors=True)
    folder = www / "65535"
    folder.mkdir(parents=True)
    started = time.monotonic()
    for photo_id in photo_ids(count):
        (folder / f"{photo_id}_{secret(photo_id)}_b.jpg").write_bytes(
            jpeg_bytes(photo_id, image_size(photo_id, kb))
        )
    os.chmod(WORK, 0o755)  # nginx's workers may run as nobody
    marker.touch()
    print(f"generated {count:,} JPEGs in {time.monotonic() - started:.0f}s")
    return www


def secret(photo_id: int) -> str:
    return f"{random.Random(photo_id).getrandbits(40):010x}"


def write_url_list(path: Path, count: int, port: int) -> Path:
    lines = (
        f"http://127.0.0.1:{port}/65535/{photo_id}_{secret(photo_id)}_b.jpg\n"
        for photo_id in photo_ids(count)
    )
    path.write_text("".join(lines))
    return path


def dir_megabytes(www: Path) -> float:
    return sum(f.stat().st_size for f in (www / "65535").iterdir()) / 1e6


def start_nginx(nginx_bin: str, work: Path, www: Path, port: int) -> subprocess.Popen:
    prefix = work / "nginx"
    prefix.mkdir(exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 60;
    types {{ image/jpeg jpg; }}
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {www};
    }}
}}
"""
    )
    process = subprocess.Popen([nginx_bin, "-p", str(prefix), "-c", str(conf)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"bench/fetch.py: nginx exited {process.returncode}; see {prefix}/error.log")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    sys.exit("bench/fetch.py: nginx did not start listening")


# ------------------------------------------------------------------ measuring a child
class TreeRss:
    """Samples a process and its descendants from /proc: the largest VmHWM and the largest
    sum of VmRSS. Not wait4's ru_maxrss: a child's starts from its parent's size at fork."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self.hwm_kb = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            memory = [_memory_kb(p) for p in _tree(self.pid)]
            self.peak_kb = max(self.peak_kb, sum(rss for rss, _ in memory))
            self.hwm_kb = max([self.hwm_kb, *(hwm for _, hwm in memory)])

    def finish(self) -> tuple[float, float]:
        self.stop.set()
        self.thread.join()
        return self.hwm_kb / 1024, self.peak_kb / 1024


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return pids


def _memory_kb(pid: int) -> tuple[int, int]:
    """VmRSS and VmHWM of one process, in kB (0 once it is gone)."""
    found = {"VmRSS:": 0, "VmHWM:": 0}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = line[:6]
                if key in found:
                    found[key] = int(line.split()[1])
    except OSError:
        pass
    return found["VmRSS:"], found["VmHWM:"]


def measure(command: list[str], env: dict[str, str] | None = None) -> tuple[float, ...]:
    """Run `command`: wall seconds, CPU and system seconds (wait4), peak and tree RSS in MB
    (/proc)."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = TreeRss(process.pid)
    stderr_tail = _drain(process)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    peak_mb, tree_mb = sampler.finish()
    if process.returncode != 0:
        sys.exit(f"{command[0]} failed ({process.returncode}):\n{stderr_tail}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_stime, peak_mb, tree_mb


def _drain(process: subprocess.Popen) -> str:
    """Read stderr to its end without waiting for the child (wait4 must reap it)."""
    tail: list[bytes] = []
    for line in process.stderr:  # type: ignore[union-attr]
        tail = (tail + [line])[-20:]
    return b"".join(tail).decode(errors="replace")


def run_downloader(urls: Path, out: Path, concurrency: int) -> Run:
    command = [str(BIN / "downloader"), "fetch", "--urls", str(urls), "--out", str(out)]
    command += ["--concurrency", str(concurrency)]
    # nginx is on loopback: the allow-list must name it (the default names Flickr's hosts).
    env = {**os.environ, "CCMIRROR_CONFIG": "/dev/null", "CCMIRROR_FETCH_ALLOW_HOSTS": "127.0.0.1"}
    seconds, cpu, system, peak, tree = measure(command, env)
    stored = sum(len(files) for _, _, files in os.walk(out / "images"))
    return Run("downloader", stored, seconds, cpu, system, peak, tree)


def run_img2dataset(urls: Path, out: Path, lean: bool) -> Run:
    options = dict(
        url_list=str(urls),
        output_folder=str(out),
        input_format="txt",
        output_format="files",
        processes_count=2,
        thread_count=64,
        resize_mode="no",
        compute_hash="sha256",
        retries=0,
        timeout=10,
        enable_wandb=False,
    )
    if lean:
        options.update(disable_all_reencoding=True, extract_exif=False)
    code = f"from img2dataset import download\ndownload(**{options!r})\n"
    # albumentations, imported by img2dataset, asks PyPI for updates unless told not to.
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
    seconds, cpu, system, peak, tree = measure([sys.executable, "-c", code], env)
    stored = 0
    for stats in out.glob("*_stats.json"):
        stored += json.loads(stats.read_text())["successes"]
    return Run("img2dataset", stored, seconds, cpu, system, peak, tree)


# ------------------------------------------------------------------ the verdict
def summarize(runs: dict[str, list[Run]]) -> None:
    dl, peer = runs["downloader"], runs["img2dataset"]

    def med(values: list[float]) -> float:
        return statistics.median(values)

    def spread(values: list[float], fmt: str) -> str:
        low, high = format(min(values), fmt), format(max(values), fmt)
        return f"{format(med(values), fmt)} (range {low}-{high})"

    print()
    for name, rs in runs.items():
        print(
            f"{name:12} median {spread([r.rate for r in rs], ',.0f')} images/s, "
            f"{spread([r.cpu_ms for r in rs], '.2f')} CPU-ms/image, "
            f"peak RSS {max(r.peak_rss_mb for r in rs):.0f} MB "
            f"(process tree {max(r.tree_rss_mb for r in rs):.0f} MB)"
        )
    rate_ratios = [d.rate / p.rate for d, p in zip(dl, peer, strict=True)]
    cpu_ratios = [d.cpu_ms / p.cpu_ms for d, p in zip(dl, peer, strict=True)]
    rss = max(r.peak_rss_mb for r in dl)
    print(
        f"rate ratio {spread(rate_ratios, '.2f')}x (target >= {TARGET_RATE}x): "
        f"{'met' if med(rate_ratios) >= TARGET_RATE else 'NOT met'}"
    )
    print(
        f"CPU ratio  {spread(cpu_ratios, '.3f')}x (target <= {TARGET_CPU}x): "
        f"{'met' if med(cpu_ratios) <= TARGET_CPU else 'NOT met'}"
    )
    print(
        f"downloader peak RSS {rss:.0f} MB (target <= {TARGET_RSS_MB} MB): "
        f"{'met' if rss <= TARGET_RSS_MB else 'NOT met'}"
    )


if __name__ == "__main__":
    sys.exit(main())
