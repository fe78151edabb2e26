"""The lab's private pillar root: site facts and throw-away secrets, one file per minion.

    write_lab_secrets(directory, minion_ids, site)

writes, under `directory` (made 0700; the master's second pillar root):

    site.sls             the site facts every minion may see (addresses, ports), no secret
    minions/<id>.sls     0600, this minion's own secrets and nothing else
    lab-secrets.json     0600, every secret generated so far (not an sls: no minion reads it)

`site` carries what the lab knows about its addresses:

    db_host          required: the database server's private address (MariaDB and the
                     queue service bind there; harvesters connect there)
    storage_host     required: the storage server's private address
    storage_port     the storage sshd's port (default 2222)
    queue_port       the queue service's port (default 8700)
    db_port          MariaDB's port (default 3306)
    private_network  a CIDR such as 10.213.0.0/24: database users may connect only from it
                     (default: any host)
    flickr_api_url   the Flickr API the harvesters call (the lab's simulator)

Secrets by role, after pillar/README.md: `hv-*` gets its own Flickr key and secret and its
own database password; `dl-*` its queue token, its storage SSH key and the storage host's
public key; `db-*` every database password and the queue's token hashes (sha256, as
harvester/queue_tokens.py reads them); `st-*` the storage host key pair and every
downloader's public key. Other ids (`master`) get no file.

Idempotent: a second call keeps every secret made before, adds the minions it has not seen
and rewrites the files, so `db-*` and `st-*` learn about a downloader added later (refresh
their pillar and apply their states again). Keys come from ssh-keygen, tokens and passwords
from `secrets.token_urlsafe`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from harvester.queue_tokens import TOKEN_PREFIX, hash_token

STATE_FILE = "lab-secrets.json"
SITE_DEFAULTS = {"storage_port": 2222, "queue_port": 8700, "db_port": 3306}
QUEUE_DB_USER = "queue"
MIGRATE_DB_USER = "migrate"
STORAGE_HOST_KEY = "storage-host"


class LabSecretsError(ValueError):
    """The site facts or a minion id cannot be used; the message says why."""


def write_lab_secrets(directory: Path, minion_ids: Iterable[str], site: dict[str, Any]) -> None:
    """Create or update the private pillar root at `directory` for `minion_ids` (added to
    those of earlier calls) and `site` (see the module docstring)."""
    facts = site_facts(site)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    state = _load_state(directory)
    for minion_id in minion_ids:
        _check_minion_id(minion_id)
        _ensure_secrets(state, minion_id)
    _save_state(directory, state)
    _write_yaml(directory / "site.sls", {"site": facts}, 0o644)
    minions_dir = directory / "minions"
    minions_dir.mkdir(exist_ok=True)
    os.chmod(minions_dir, 0o700)
    for minion_id in state["minions"]:
        pillar = minion_pillar(state, minion_id, facts)
        if pillar:
            _write_yaml(minions_dir / f"{minion_id}.sls", pillar, 0o600)


def site_facts(site: dict[str, Any]) -> dict[str, Any]:
    """The `site:` pillar: the given facts with defaults, checked, and the queue URL."""
    missing = [key for key in ("db_host", "storage_host") if not site.get(key)]
    if missing:
        raise LabSecretsError(f"site facts missing: {', '.join(missing)}")
    facts = {**SITE_DEFAULTS, **site}
    for key in SITE_DEFAULTS:
        if not isinstance(facts[key], int) or not 0 < facts[key] < 65536:
            raise LabSecretsError(f"site {key} must be a port number, not {facts[key]!r}")
    facts["queue_url"] = f"http://{facts['db_host']}:{facts['queue_port']}"
    if facts.get("private_network"):
        try:
            network = ipaddress.IPv4Network(facts["private_network"])
        except ValueError as exc:
            raise LabSecretsError(f"site private_network: {exc}") from None
        facts["private_network"] = str(network)
    return facts


def minion_pillar(state: dict[str, Any], minion_id: str, facts: dict[str, Any]) -> dict:
    """What one minion may know, by its role (the prefix of its id)."""
    minions = state["minions"]
    if minion_id.startswith("hv-"):
        own = minions[minion_id]
        return {
            "harvester": {
                "flickr": {"api_key": own["flickr_api_key"], "api_secret": own["flickr_secret"]},
                "db_password": own["db_password"],
            }
        }
    if minion_id.startswith("dl-"):
        own = minions[minion_id]
        return {
            "downloader": {
                "queue_token": own["queue_token"],
                "ssh_key": own["ssh_private_key"],
                "storage_host_key": state["keys"][STORAGE_HOST_KEY]["public"],
            }
        }
    if minion_id.startswith("db-"):
        users = {MIGRATE_DB_USER: state["db"]["migrate_password"]}
        users[QUEUE_DB_USER] = state["db"]["queue_password"]
        for other, secrets_of in sorted(minions.items()):
            if other.startswith("hv-"):
                users[other] = secrets_of["db_password"]
        tokens = {
            other: hash_token(secrets_of["queue_token"])
            for other, secrets_of in sorted(minions.items())
            if other.startswith("dl-")
        }
        return {
            "db": {"passwords": users},
            "queue": {"tokens": tokens},
        }
    if minion_id.startswith("st-"):
        host_key = state["keys"][STORAGE_HOST_KEY]
        authorized = {
            other: secrets_of["ssh_public_key"]
            for other, secrets_of in sorted(minions.items())
            if other.startswith("dl-")
        }
        return {
            "storage": {
                "host_key": {"private": host_key["private"], "public": host_key["public"]},
                "authorized_keys": authorized,
            }
        }
    return {}


def _ensure_secrets(state: dict[str, Any], minion_id: str) -> None:
    """Make what `minion_id` needs, keeping whatever was made for it before."""
    own = state["minions"].setdefault(minion_id, {})
    if minion_id.startswith("hv-"):
        own.setdefault("flickr_api_key", secrets.token_hex(16))  # the shape of a Flickr key
        own.setdefault("flickr_secret", secrets.token_hex(8))
        own.setdefault("db_password", secrets.token_urlsafe(24))
    elif minion_id.startswith("dl-"):
        own.setdefault("queue_token", TOKEN_PREFIX + secrets.token_urlsafe(32))
        if "ssh_private_key" not in own:
            private, public = _ssh_keygen(f"ccmirror-{minion_id}")
            own.update(ssh_private_key=private, ssh_public_key=public)
    if STORAGE_HOST_KEY not in state["keys"]:
        private, public = _ssh_keygen("ccmirror-storage-host")
        state["keys"][STORAGE_HOST_KEY] = {"private": private, "public": public}
    state["db"].setdefault("migrate_password", secrets.token_urlsafe(24))
    state["db"].setdefault("queue_password", secrets.token_urlsafe(24))


def _check_minion_id(minion_id: str) -> None:
    # The id names a pillar sls file: no dots (sls path separators), no slashes.
    if not minion_id or not all(c.isalnum() or c in "-_" for c in minion_id):
        raise LabSecretsError(f"bad minion id {minion_id!r}: letters, digits, '-' and '_' only")


def _ssh_keygen(comment: str) -> tuple[str, str]:
    """A new ed25519 key pair (private, public), made in a private temporary directory."""
    with tempfile.TemporaryDirectory(prefix="lab-secrets-") as tmp:
        path = Path(tmp) / "key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            capture_output=True,
        )
        return path.read_text(), path.with_suffix(".pub").read_text().strip()


def _load_state(directory: Path) -> dict[str, Any]:
    path = directory / STATE_FILE
    state = json.loads(path.read_text()) if path.exists() else {}
    for key in ("minions", "keys", "db"):
        state.setdefault(key, {})
    return state


def _save_state(directory: Path, state: dict[str, Any]) -> None:
    _write_text(directory / STATE_FILE, json.dumps(state, indent=1, sort_keys=True), 0o600)


def _write_yaml(path: Path, data: dict, mode: int) -> None:
    text = "# written by lab/lab_secrets.py: throw-away lab values\n" + yaml.dump(
        data, Dumper=_BlockDumper, default_flow_style=False, sort_keys=True
    )
    _write_text(path, text, mode)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (private keys) as `|` blocks, as a person would write them."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def _write_text(path: Path, text: str, mode: int) -> None:
    """Atomically, with its mode set before it is visible: no reader sees half a file, and
    no secret is ever world-readable, whatever the umask."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
