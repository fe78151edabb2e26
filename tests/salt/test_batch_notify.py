"""Long batches post their progress to the operator's webhook (`_utils/batch_notify.py`):
`salt-run batch.wait`, `batch.reconcile` and `audit.storage` through a real master with db-1
(a real MariaDB) and the master's own minion on loopback, the URL in the master minion's
settings of the private pillar root (`monitoring:webhook_url`, as Alertmanager reads it), and
a receiver of our own on 127.0.0.1 recording what is posted. A webhook that fails leaves the
batch's result as it was, and its URL (a secret) is in no return and no log."""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.conftest import harvester_env, serving
from tests.integration.test_harvest import seed_day
from tests.salt.loopback import Master, free_port, salt_on_loopback

ROOT = Path(__file__).resolve().parent.parent.parent
VENV = Path(sys.executable).parent.parent
HOOK_PATH = "/services/T000/B000/notify-secret-path"  # the secret part of a Slack webhook


class Receiver(ThreadingHTTPServer):
    posts: list[dict]
    status: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{HOOK_PATH}"


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts.append({"path": self.path, "body": json.loads(body)})
        self.send_response(self.server.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


@dataclass
class Site:
    salt: Master
    base: Path
    private: Path  # the master's second pillar root
    migrate: Path

    def webhook(self, url: str | None, channel: str = "") -> None:
        """The operator's one setting, in the master's settings of the private root."""
        settings = self.private / "settings" / "master.sls"
        settings.unlink(missing_ok=True)
        if url is not None:
            pillar: dict = {"monitoring": {"webhook_url": url}}
            if channel:
                pillar["prometheus"] = {"alertmanager": {"channel": channel}}
            settings.write_text(yaml.safe_dump(pillar))

    def logs(self) -> str:
        """Everything the master, salt-run and the minions logged."""
        files = [*self.base.glob("*.out"), *self.base.glob("*/root/var/log/salt/*")]
        return "".join(path.read_text(errors="replace") for path in files)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(("127.0.0.1", 0), Handler)
    server.posts, server.status = [], 200
    yield from serving(server)


@pytest.fixture(scope="module")
def site(salt_call_bin) -> Iterator[Site]:
    """A master (pillar: this checkout's root and a private one) with db-1 and `master`."""
    base = Path(tempfile.mkdtemp(prefix="ccm-notify-"))  # short: Salt's sockets live below
    private, migrate, queue_yaml = base / "private", base / "m.yaml", base / "q.yaml"
    (private / "settings").mkdir(parents=True)
    # No queue answers there: batch.status says so in a line, and waits on the database.
    queue_yaml.write_text(
        yaml.safe_dump({"db_url": "mysql://x@127.0.0.1:1/x", "queue": {"port": free_port()}})
    )
    master = {
        "ccmirror_venv": str(VENV),
        "ccmirror_migrate_config": str(migrate),
        "ccmirror_queue_config": str(queue_yaml),
        "pillar_roots": {"base": [str(ROOT / "pillar"), str(private)]},
    }
    with salt_on_loopback(base, {"db-1": {"venv": str(VENV)}, "master": {}}, master) as salt:
        yield Site(salt, base, private, migrate)


@pytest.fixture
def on_db(site: Site, db_url: str) -> Site:
    """The site with db-1's migrate config on this test's database."""
    site.migrate.write_text(yaml.safe_dump({"db_url": db_url}))
    return site


def texts(receiver: Receiver) -> list[str]:
    return [post["body"]["text"] for post in receiver.posts]


def test_wait_posts_when_it_starts_and_ends_and_when_it_times_out(on_db, receiver, db_url):
    on_db.webhook(receiver.url, channel="#mirror")
    answer, code, _ = on_db.salt.run_json("batch.wait", "until=harvested", "interval=1")
    assert code == 0 and answer["result"] is True and "notify" not in answer, answer
    start, end = texts(receiver)
    assert start == "harvest: waiting until harvest is done: 0 search tasks left"
    assert end.startswith("harvest: finished after ") and end.endswith("s"), end
    # Slack's JSON, to the webhook's own path, with the channel Alertmanager posts to.
    assert all(p["path"] == HOOK_PATH for p in receiver.posts)
    assert all(set(p["body"]) == {"text", "channel"} for p in receiver.posts)
    assert {p["body"]["channel"] for p in receiver.posts} == {"#mirror"}

    receiver.posts.clear()
    seed_day(harvester_env(db_url), stride=3600)  # 24 search tasks pending
    answer, code, _ = on_db.salt.run_json(
        "batch.wait", "until=harvested", "timeout=5", "interval=1", "notify_every=1"
    )
    assert code == 1 and answer["error"] == "not harvested after 5s", answer
    start, *between, end = texts(receiver)
    assert start == "harvest: waiting until harvest is done: 24 search tasks left"
    # A line every notify_every seconds: each poll after the first is an interval later.
    assert between and all(
        line.startswith("harvest: 24 search tasks left after ") for line in between
    ), between
    assert end.startswith("harvest: timed out after ") and end.endswith(": 24 search tasks left"), (
        end
    )

    receiver.posts.clear()
    for bad in ("-5", "soon", "90000"):
        refused, code, _ = on_db.salt.run_json("batch.wait", f"notify_every={bad}")
        assert code == 1 and refused["result"] is False, refused
        assert refused["error"].startswith("notify_every must be a number of seconds from 0")
    assert receiver.posts == []  # bad input: nothing waited on, nothing posted


def test_reconcile_and_the_audit_post_their_end(on_db, receiver):
    on_db.webhook(receiver.url)
    answer, code, _ = on_db.salt.run_json("batch.reconcile")
    assert code == 0 and answer["result"] is True and "notify" not in answer, answer
    assert texts(receiver) == [f"reconcile: {answer['comment']}"]
    assert all(set(p["body"]) == {"text"} for p in receiver.posts)  # no channel set

    receiver.posts.clear()
    failed, code, _ = on_db.salt.run_json("audit.storage", "timeout=30")
    assert code == 1 and failed["error"] == "no storage minion (st-*) answered", failed
    assert texts(receiver) == ["audit: failed: no storage minion (st-*) answered"]

    receiver.posts.clear()
    refused, code, _ = on_db.salt.run_json("batch.reconcile", "batch_size=0")
    assert code == 1 and receiver.posts == []  # bad input: nothing run, nothing posted


def test_a_failing_webhook_leaves_the_batch_as_it_was_and_its_url_secret(on_db, receiver):
    receiver.status = 500
    on_db.webhook(receiver.url)
    answer, code, _ = on_db.salt.run_json("batch.wait", "until=harvested", "interval=1")
    assert code == 0 and answer["result"] is True and answer["notify"] == "failed: HTTP 500"
    assert len(receiver.posts) == 2  # it was asked, and said no
    # At debug level too: urllib3 logs each request's path there.
    reconciled, code, _ = on_db.salt.run_json("batch.reconcile", "--log-file-level=debug")
    assert code == 0 and reconciled["result"] is True, reconciled
    assert reconciled["notify"] == "failed: HTTP 500"
    assert "Starting new HTTP connection" in on_db.logs()  # urllib3's debug lines are there

    closed = f"http://127.0.0.1:{free_port()}{HOOK_PATH}"  # nothing listens there
    on_db.webhook(closed)
    refused, code, _ = on_db.salt.run_json("batch.wait", "until=harvested", "interval=1")
    assert code == 0 and refused["result"] is True, refused
    assert refused["notify"] == "failed: cannot connect: Connection refused"

    for url in (receiver.url, closed):
        assert HOOK_PATH not in json.dumps([answer, reconciled, refused])
        assert HOOK_PATH not in on_db.logs() and url not in on_db.logs()
    assert "the webhook post failed: HTTP 500" in on_db.logs()  # a warning, without the URL


def test_without_a_webhook_nothing_is_posted(on_db, receiver):
    on_db.webhook(None)
    answer, code, _ = on_db.salt.run_json("batch.wait", "until=harvested", "interval=1")
    assert code == 0 and answer["result"] is True and "notify" not in answer, answer
    reconciled, code, _ = on_db.salt.run_json("batch.reconcile")
    assert code == 0 and "notify" not in reconciled, reconciled
    assert receiver.posts == []
