"""#22: each daemon's exporter address and the batch jobs' textfile directory reach the
configs Salt renders, and each loads as its program reads it. On a site whose private
network holds one of this minion's addresses (loopback here, a one-machine site) the
exporter listens there on the role's port; with none there, nowhere (never 0.0.0.0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.fleet.lab_secrets import write_lab_secrets
from tests.salt.conftest import MINIONS, ROOT, SITE, make_salt_call
from tests.salt.test_render import args

TEXTFILES = "/var/lib/prometheus/node-exporter"


def config_of(highstate: dict, state_id: str, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(args(highstate[state_id])["contents"])
    return path


@pytest.fixture(scope="module")
def loopback_site_call(salt_call_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    private = tmp_path_factory.mktemp("salt-metrics") / "private"
    write_lab_secrets(private, MINIONS, {**SITE, "private_network": "127.0.0.0/8"})
    config_dir = tmp_path_factory.mktemp("salt-metrics-minion")
    return make_salt_call(salt_call_bin, config_dir, [ROOT / "pillar", private])


def listens(salt_call, tmp_path: Path) -> tuple[str, str]:
    """`metrics.listen` of hv-1's harvester and dl-1's downloader, as each program loads it."""
    from downloader.config import load_settings as downloader_settings
    from harvester.config import load_settings as harvester_settings

    hv = salt_call("hv-1", "state.show_highstate")
    dl = salt_call("dl-1", "state.show_highstate")
    harvester = config_of(hv, "harvester-config-file-managed", tmp_path, "harvester")
    downloader = config_of(dl, "downloader-config-file-managed", tmp_path, "downloader")
    return (
        harvester_settings(harvester, environ={}).metrics.listen,
        downloader_settings(downloader, environ={}).metrics.listen,
    )


def test_exporters_listen_on_the_private_address_and_the_roles_port(loopback_site_call, tmp_path):
    assert listens(loopback_site_call, tmp_path) == ("127.0.0.1:9711", "127.0.0.1:9712")


def test_with_no_address_on_the_private_network_nothing_listens(salt_call, tmp_path):
    # The shared site's network (10.250.0.0/24) holds no address of this machine.
    assert listens(salt_call, tmp_path) == ("", "")


def test_db_1s_batch_jobs_record_their_success_for_node_exporter(salt_call, tmp_path):
    from harvester.config import load_settings

    db = salt_call("db-1", "state.show_highstate")
    migrate = config_of(db, "db-migrate-config-file-managed", tmp_path, "migrate")
    settings = load_settings(migrate, environ={})
    assert (settings.metrics.textfile_dir, settings.metrics.listen) == (TEXTFILES, "")
