"""salt-lint and yamllint are clean over salt/ and pillar/ (as `make lint` runs them)."""

from __future__ import annotations

import subprocess

from tests.conftest import VENV_BIN
from tests.salt.conftest import ROOT


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_salt_lint_is_clean():
    sls = sorted(
        str(p.relative_to(ROOT)) for d in ("salt", "pillar") for p in (ROOT / d).rglob("*.sls")
    )
    result = run(str(VENV_BIN / "salt-lint"), *sls)
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_is_clean():
    result = run(
        str(VENV_BIN / "yamllint"), "--strict", "salt", "pillar", ".yamllint", ".salt-lint"
    )
    assert result.returncode == 0, result.stdout + result.stderr
