"""Salt's own `salt-call --local` against this checkout's states and pillar: a minion config
in a temporary directory with file_roots = salt/, pillar_roots = [pillar/, a private root
written by lab/fleet/lab_secrets.py], as the master has them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from lab.fleet.lab_secrets import write_lab_secrets
from lab.fleet.salt_master import SALT_VENV, ensure_salt
from lab.fleet.salt_utils import plain_util  # noqa: F401 (tests import it from here)

ROOT = Path(__file__).resolve().parent.parent.parent
MINIONS = ["master", "db-1", "hv-1", "hv-2", "dl-1", "dl-2", "st-1"]
SITE = {
    "db_host": "10.250.0.2",
    "storage_host": "10.250.0.3",
    "storage_port": 2222,
    "private_network": "10.250.0.0/24",
    "flickr_api_url": "http://10.250.0.1:8800/services/rest/",
}
SaltCall = Callable[..., object]


def runner_master_config(directory: Path, **options: object) -> Path:
    """A master config in `directory` that loads this checkout's runners and the `_utils/`
    they reach (Salt's loader reads it; no master runs), with `options` over the defaults."""
    config = directory / "master"
    settings = {
        "root_dir": str(directory / "root"),
        "runner_dirs": [str(ROOT / "_runners")],
        "utils_dirs": [str(ROOT / "_utils")],  # what the runners share (runner_tools, ...)
        "log_level": "quiet",
        **options,
    }
    config.write_text(yaml.safe_dump(settings))
    return config


@pytest.fixture(scope="session")
def salt_call_bin() -> Path:
    if not (SALT_VENV / "bin" / "salt-call").exists():
        ensure_salt()
    return SALT_VENV / "bin" / "salt-call"


@pytest.fixture(scope="session")
def private_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("salt") / "private"
    write_lab_secrets(directory, MINIONS, SITE)
    return directory


def make_salt_call(salt_call_bin: Path, config_dir: Path, pillar_roots: list[Path]):
    config_dir.mkdir(parents=True, exist_ok=True)
    minion_config = {
        "file_client": "local",
        "root_dir": str(config_dir / "root"),
        "file_roots": {"base": [str(ROOT / "salt")]},
        "pillar_roots": {"base": [str(p) for p in pillar_roots]},
        "log_level": "quiet",
        "systemd.scope": False,
    }
    (config_dir / "minion").write_text(yaml.safe_dump(minion_config))

    def salt_call(minion_id: str, *args: str, check: bool = True):
        """`salt-call --local --out=json ARGS` as `minion_id`: its `local` return value."""
        result = subprocess.run(
            [str(salt_call_bin), "-c", str(config_dir), "--local", "--id", minion_id]
            + ["--out=json", "--retcode-passthrough", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"salt-call {args} as {minion_id}: {result.stdout}{result.stderr}")
        return json.loads(result.stdout)["local"] if result.stdout.strip() else None

    return salt_call


@pytest.fixture(scope="session")
def salt_call(salt_call_bin: Path, private_root: Path, tmp_path_factory) -> SaltCall:
    """Renders with the repo's pillar and the lab's private root."""
    config_dir = tmp_path_factory.mktemp("salt-minion")
    return make_salt_call(salt_call_bin, config_dir, [ROOT / "pillar", private_root])
