"""The site's image hosts (pillar `site:fetch_allow_hosts`) reach every config that fetches or
imports image URLs: the downloader's, the harvester's, and db-1's migrate config that
`harvester import-yfcc` runs with; each loads as the program reads it. Without the fact, no
config names the list and the programs keep their default (Flickr's hosts)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ccmirror_common.hosts import DEFAULT_POLICY, HostPolicy
from lab.fleet.lab_secrets import write_lab_secrets
from tests.salt.conftest import MINIONS, ROOT, SITE, make_salt_call
from tests.salt.test_render import args

LAB_HOSTS = ["*.staticflickr.com", "*.flickr.com", "10.250.0.1"]
# Where each config is: (minion, state id), and which program's settings read it.
CONFIGS = {
    "downloader": ("dl-1", "downloader-config-file-managed"),
    "harvester": ("hv-1", "harvester-config-file-managed"),
    "import-yfcc": ("db-1", "db-migrate-config-file-managed"),
}


def rendered(salt_call, tmp_path: Path) -> dict[str, Path]:
    """Each config's contents, written where its program can load it."""
    paths = {}
    for name, (minion, state_id) in CONFIGS.items():
        highstate = salt_call(minion, "state.show_highstate")
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(args(highstate[state_id])["contents"])
    return paths


def allow_hosts_of(paths: dict[str, Path]) -> dict[str, HostPolicy]:
    from downloader.config import load_settings as downloader_settings
    from harvester.config import load_settings as harvester_settings

    return {
        "downloader": downloader_settings(paths["downloader"], environ={}).fetch.allow_hosts,
        "harvester": harvester_settings(paths["harvester"], environ={}).fetch.allow_hosts,
        "import-yfcc": harvester_settings(paths["import-yfcc"], environ={}).fetch.allow_hosts,
    }


@pytest.fixture(scope="module")
def lab_site_call(salt_call_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    """Rendering with a site that names the lab's image host, and downloader settings of
    their own for `fetch:` (the lab's e2e sets its concurrency): both must survive."""
    private = tmp_path_factory.mktemp("salt-allow") / "private"
    write_lab_secrets(private, MINIONS, {**SITE, "fetch_allow_hosts": LAB_HOSTS})
    settings = private / "settings"  # pillar/top.sls reads settings/<role>.sls from here
    settings.mkdir()
    (settings / "downloader.sls").write_text(
        yaml.safe_dump({"downloader": {"settings": {"fetch": {"concurrency": 16}}}})
    )
    config_dir = tmp_path_factory.mktemp("salt-allow-minion")
    return make_salt_call(salt_call_bin, config_dir, [ROOT / "pillar", private])


def test_the_sites_image_hosts_reach_every_config(lab_site_call, tmp_path):
    paths = rendered(lab_site_call, tmp_path)

    assert allow_hosts_of(paths) == dict.fromkeys(CONFIGS, HostPolicy(LAB_HOSTS))
    downloader = yaml.safe_load(paths["downloader"].read_text())
    assert downloader["fetch"]["concurrency"] == 16, "the role's own fetch settings were lost"


def test_without_the_site_fact_the_programs_keep_flickrs_hosts(salt_call, tmp_path):
    paths = rendered(salt_call, tmp_path)

    for path in paths.values():
        assert "allow_hosts" not in path.read_text()
    assert allow_hosts_of(paths) == dict.fromkeys(CONFIGS, DEFAULT_POLICY)
