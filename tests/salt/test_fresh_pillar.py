"""What a minion reads of the site's pillar is what the master compiles now, not the copy the
minion holds in memory since it started (a highstate never renews that copy): a real
salt-master and a storage minion on loopback, whose site changes its storage backend after
the minion started, as Terraform's or fleet.up's site facts do."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.salt.loopback import Master, salt_on_loopback

VENV = Path(sys.executable).parent.parent
MINION = "st-1"


@dataclass
class Site:
    master: Master
    site_file: Path

    def backend(self, name: str) -> None:
        """The site's storage backend as the master's pillar says it from now on."""
        self.site_file.write_text(f"site:\n  storage_backend: {name}\n")


@pytest.fixture
def site(salt_call_bin) -> Iterator[Site]:
    """A master whose pillar gives st-1 the site's facts (rsync at first), and st-1."""
    # Short: Salt's unix sockets live below root_dir, and a pytest tmp_path is too long.
    base = Path(tempfile.mkdtemp(prefix="ccm-pil-"))
    pillar = base / "pillar"
    pillar.mkdir()
    (pillar / "top.sls").write_text(f"base:\n  '{MINION}':\n    - site\n")
    setup = Site(Master(base / "master"), pillar / "site.sls")
    setup.backend("rsync")
    master = {"pillar_roots": {"base": [str(pillar)]}}
    with salt_on_loopback(base, {MINION: {"venv": str(VENV)}}, master) as running:
        setup.master = running
        yield setup


def test_status_names_the_storage_service_of_the_sites_backend_now(site: Site) -> None:
    """The site moves from rsync to SeaweedFS after st-1 started: `ccmirror.status` names
    SeaweedFS's volume server, not the rsync target's sshd the minion's old copy says."""
    status, code = site.master.call(MINION, "ccmirror.status")
    assert code == 0 and status["service"]["name"] == "ccmirror-storage-sshd", status
    site.backend("seaweedfs")
    status, code = site.master.call(MINION, "ccmirror.status")
    assert code == 0 and status["service"]["name"] == "ccmirror-weed-volume", status


def test_storage_access_applies_what_the_sites_backend_is_now(site: Site) -> None:
    """`ccmirror_storage_access.apply` (fleet.down's revoke on every storage droplet) picks
    the access state by the site's backend as it is now: after a move to a backend with no
    access of its own to apply here, it says so rather than apply the rsync target's keys
    its old copy names. On rsync it renders that state (here with no states to render it
    from: the failure names the state and why, read as the fleet runner reads a run)."""
    answer, code = site.master.call(MINION, "ccmirror_storage_access.apply")
    assert code != 0 and answer["result"] is False, answer
    assert answer["comment"].startswith("storage-authorized-keys-file-managed: "), answer
    assert "storage.config" in answer["comment"], answer  # no such sls on this master
    site.backend("spaces")
    answer, code = site.master.call(MINION, "ccmirror_storage_access.apply")
    assert code != 0 and answer == {
        "result": False,
        "comment": "site:storage_backend 'spaces': no storage access to apply here",
    }
