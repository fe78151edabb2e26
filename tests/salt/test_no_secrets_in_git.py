"""Nothing that looks like a private key or a token sits in git outside the example pillar
(lab secrets are generated into a directory outside the checkout)."""

from __future__ import annotations

import re
import subprocess

from tests.salt.conftest import ROOT

ALLOWED = ("pillar/secrets.example/",)
LOOKS_SECRET = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|ccmq_[A-Za-z0-9_-]{40,}"  # a queue token: ccmq_ and 32 random bytes
    r"|(?:api_key|api_secret|secret|token|password|passwd)['\"]?\s*[:=]\s*['\"]?"
    r"[A-Za-z0-9_+/=-]{16,}",
    re.IGNORECASE,
)


def tracked_files() -> list[str]:
    result = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    )
    return [name for name in result.stdout.decode().split("\0") if name]


def test_scanner_finds_what_it_looks_for():
    assert LOOKS_SECRET.search("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert LOOKS_SECRET.search("queue_token: ccmq_" + "a" * 43)
    assert LOOKS_SECRET.search('db_password: "q8k7eKa-lS69EH8iLG7JJ-GDl3Q2yUKX"')
    assert not LOOKS_SECRET.search("queue_token: TOKEN")


def test_no_private_key_or_token_in_git():
    found = []
    for name in tracked_files():
        if name.startswith(ALLOWED) or name == "tests/salt/test_no_secrets_in_git.py":
            continue
        path = ROOT / name
        if not path.is_file():
            continue  # deleted in the working tree, not yet committed
        text = path.read_bytes()[:2_000_000].decode("utf-8", errors="replace")
        for match in LOOKS_SECRET.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(f"{name}:{line}: {match.group(0)[:40]}")
    assert not found, "secrets-looking values in git:\n" + "\n".join(found)
