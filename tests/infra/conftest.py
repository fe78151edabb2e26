"""The fleet checked from its salt master with testinfra's salt:// backend:

    pytest tests/infra --hosts='salt://*'            # the salt venv's python, on the master
    lab infra                                         # the same against the lab's droplets

Each test runs once per minion, only on minions of the roles its `role` mark names; a
minion's roles are the states salt/top.sls gives its id, so the suite follows the top file on
a real fleet as in the lab. Without salt:// hosts (a plain `pytest` of the whole project)
every test here is skipped.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest
import yaml

TOP_FILE = Path(__file__).resolve().parents[2] / "salt" / "top.sls"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "role(name, ...): only on minions with one of these roles (salt/top.sls)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the suite without salt:// hosts; otherwise leave out each test on the minions
    that lack the roles its `role` mark names (deselected, not skipped: a fleet of 200
    droplets would list thousands of skips)."""
    here = Path(__file__).parent
    ours = [item for item in items if here in item.path.parents]
    if not (config.option.hosts or "").startswith("salt://"):
        skip = pytest.mark.skip(reason="tests/infra runs from a salt master: --hosts='salt://*'")
        for item in ours:
            item.add_marker(skip)
        return
    unfit = [item for item in ours if not fits(item)]
    if unfit:
        config.hook.pytest_deselected(items=unfit)
        items[:] = [item for item in items if item not in unfit]


def fits(item: pytest.Item) -> bool:
    mark = item.get_closest_marker("role")
    host = getattr(item, "callspec", None) and item.callspec.params.get("_testinfra_host")
    if mark is None or not host:
        return True
    return bool(roles_of(host.backend.host) & set(mark.args))


def roles_of(minion_id: str) -> set[str]:
    """The states the top file gives this minion id (`common`, `db`, `queue`, ...)."""
    top = yaml.safe_load(TOP_FILE.read_text())["base"]
    return {
        sls for glob, states in top.items() if fnmatch.fnmatch(minion_id, glob) for sls in states
    }


@pytest.fixture(scope="module")
def minion_id(host) -> str:
    return host.backend.host


@pytest.fixture(scope="module")
def roles(minion_id: str) -> set[str]:
    return roles_of(minion_id)


@pytest.fixture(scope="module")
def pillar(host) -> dict:
    """The pillar as the minion itself sees it (Salt 3008 masks pillar values in output
    unless asked: `unmask` is unknown to older releases, which never mask)."""
    return host.salt("pillar.items", ["unmask=True"])


@pytest.fixture(scope="module")
def site(pillar: dict) -> dict:
    """Site facts every minion may know: db_host, storage_host, ports."""
    return pillar["site"]
