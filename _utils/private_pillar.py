"""The master's private pillar root, written by one writer: the plain layer of the `secrets`
runner (``__utils__["private_pillar.*"]``; the master's config has ``utils_dirs`` on this
checkout's ``_utils/``). Layout (pillar/README.md lists the keys of each role):

    site.sls             the site's facts every minion sees (addresses, ports), no secret
    minions/<id>.sls     0600, that minion's own secrets and nothing else (pillar/top.sls
                         includes it for the minion whose authenticated id it is)
    secrets.json         0600, the record of every secret made: the sls files are rendered
                         from it, so a re-run repairs a file left half-way

No ``__opts__``, no Salt, no ``ccmirror`` import (yaml only): the lab writes the same files
with it (lab/fleet/lab_secrets.py, loading this file by path), and the queue's token form
and hash come from ccmirror_common/tokens.py beside it (loaded by path). The fleet runner checks
a droplet's name with `check_minion_id`. Secret values are never logged nor returned.

Over 500 lines: one writer of one layout whose record and rotations go together, so that the
lab can load it by path; the site facts' checks are site_pillar.py beside it, and its file
helpers (atomic writes, the lock, ssh-keygen) private_files.py.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

RECORD_FILE = "secrets.json"
LEGACY_RECORD_FILE = "lab-secrets.json"  # the name lab/fleet/lab_secrets.py used before
QUEUE_DB_USER = "queue"
MIGRATE_DB_USER = "migrate"
STORAGE_HOST_KEY = "storage-host"
# The object store's S3 identities that are no downloader's (SeaweedFS's -s3.config): the
# admin (bucket settings; stays in the record on the master) and the audit (db-1: list, read,
# and restore a version by copying it, which only adds a version under object lock).
STORAGE_ADMIN, STORAGE_AUDIT = "storage-admin", "storage-audit"
# The backup cluster's gateway (bk-*, #20): its admin (the bucket), `weed filer.backup`'s sink
# (adds objects) and the reader db-1 measures its lag and restores photos with.
BACKUP_S3_KEYS = {"admin": "backup-admin", "sink": "backup-sink", "reader": "backup-reader"}
# The catalog backup's S3 key (db-1: read, list and write the bucket's catalog/ prefix only),
# in the record's `db` section: renewed by `rotate what=storage_key` like the downloaders'.
BACKUP_KEY_FIELDS = ("backup_s3_access_key", "backup_s3_secret_key")
# The record's list of downloaders whose secrets were forgotten (ids only).
FORGOTTEN_DOWNLOADERS = "forgotten_downloaders"
FILER_DB_USER = "seaweedfs"  # the SeaweedFS filers' metadata store on db-1
FLICKR_VALUE = re.compile(r"^[A-Za-z0-9]{1,200}$")
FLICKR_TOKEN = re.compile(r"^[A-Za-z0-9-]{1,200}$")  # Flickr's: digits, a dash, hex digits
OAUTH_FIELDS = ("oauth_token", "oauth_token_secret")  # a signing harvester's access token
ACCESS_KEY_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

# A rotation's section for the record's shared key pairs (`keys`): no minion id is "keys".
KEYS = "keys"
# What each rotation renews: per minion role prefix, in the record's `db` section, and (KEYS)
# whole key pairs of its `keys`.
ROTATED_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "queue_tokens": {"dl-": ("queue_token",)},
    "storage_key": {
        "dl-": ("ssh_private_key", "ssh_public_key", "s3_access_key", "s3_secret_key"),
        "db": BACKUP_KEY_FIELDS,
    },
    "db_passwords": {"hv-": ("db_password",), "db": ("migrate_password", "queue_password")},
    # The backup cluster's keys: bk-*'s gateway accepts both during the rotation.
    "backup_keys": {KEYS: tuple(BACKUP_S3_KEYS.values())},
}
STEPS = ("start", "switch", "retire")
STARTED, SWITCHED = "started", "switched"


def write_private_root(
    directory: Path,
    minion_ids: Iterable[str],
    site: dict[str, Any] | None = None,
    *,
    throwaway_flickr_keys: bool = False,
) -> dict[str, Any]:
    """Create or update the private root for `minion_ids` (added to those recorded before;
    none is forgotten) and `site` (merged over the recorded facts). Keeps every secret made
    before; makes what a new minion needs. Flickr keys are made only for the lab
    (`throwaway_flickr_keys`): a real one is set with `store_flickr_key`.

    Returns {"added": ids new to the record, "files": paths written (relative)}."""
    directory = Path(directory)
    ids = list(minion_ids)
    for minion_id in ids:
        check_minion_id(minion_id)
    # Checked before the root is made: a refused first run leaves nothing behind.
    site_facts({**_recorded_site(directory, load_record(directory)), **(site or {})})
    with _FILES.locked(directory):
        record = load_record(directory)
        facts = site_facts({**_recorded_site(directory, record), **(site or {})})
        record["site"] = facts
        added = [minion_id for minion_id in ids if minion_id not in record["minions"]]
        for minion_id in ids:
            _ensure_secrets(record, minion_id, throwaway_flickr_keys)
        return {"added": added, "files": _save_and_render(directory, record)}


def store_flickr_key(
    directory: Path, minion_id: str, key: str, secret: str, oauth: tuple[str, str] | None = None
) -> bool:
    """Set harvester `minion_id`'s Flickr key, secret and access token `oauth` (token, secret;
    None drops the old one: a token is one key's); True if changed. Only its file is rewritten."""
    check_minion_id(minion_id)
    if not minion_id.startswith("hv-"):
        raise SecretsError(
            f"minion {minion_id!r} is not a harvester (hv-*): only harvesters have a Flickr key"
        )
    token = dict(zip(OAUTH_FIELDS, oauth, strict=True)) if oauth is not None else {}
    for name, value in {"key": key, "secret": secret, **token}.items():
        pattern = FLICKR_TOKEN if name in OAUTH_FIELDS else FLICKR_VALUE
        if not isinstance(value, str) or not pattern.match(value):
            # The value itself stays out of the message: it may be a real secret.
            raise SecretsError(
                f"Flickr {name} must be a string of letters and digits (quote it if it is "
                "all digits)"
            )
    directory = Path(directory)
    with _FILES.locked(directory):
        record = load_record(directory, must_exist=True)
        own = record["minions"].get(minion_id)
        if own is None:
            raise SecretsError(
                f"minion {minion_id} is not in the private root: accept its key and run "
                "secrets.init first"
            )
        own.update(flickr_api_key=key, flickr_secret=secret, flickr_oauth=token)
        return bool(_save_and_render(directory, record))


def forget_minion(directory: Path, minion_id: str) -> bool:
    """Drop a minion's secrets: its file goes, and the queue's and storage's files no
    longer list its token hash and key. True when it was known."""
    check_minion_id(minion_id)
    directory = Path(directory)
    with _FILES.locked(directory):
        record = load_record(directory, must_exist=True)
        known = record["minions"].pop(minion_id, None) is not None
        if known and minion_id.startswith("dl-"):
            # Named (no secret) so that storage's gateways take its key away on a reload.
            forgotten = set(record.setdefault(FORGOTTEN_DOWNLOADERS, [])) | {minion_id}
            record[FORGOTTEN_DOWNLOADERS] = sorted(forgotten)
        for rotation in record["rotations"].values():
            rotation["minions"].pop(minion_id, None)
        path = directory / "minions" / f"{minion_id}.sls"
        removed = path.exists()
        path.unlink(missing_ok=True)
        return bool(_save_and_render(directory, record)) or known or removed


def rotate_secrets(directory: Path, what: str, step: str = "start") -> dict[str, Any]:
    """One step of a rotation (see the runner's `rotate` for the steps and what to apply
    between them). Each step is idempotent. Returns {"changed", "state", "minions",
    "files"}: the rotation's state after the step ("started", "switched" or "done")."""
    if what not in ROTATED_FIELDS:
        raise SecretsError(f"what must be one of {', '.join(ROTATED_FIELDS)}, not {what!r}")
    if step not in STEPS:
        raise SecretsError(f"step must be one of {', '.join(STEPS)}, not {step!r}")
    directory = Path(directory)
    with _FILES.locked(directory):
        record = load_record(directory, must_exist=True)
        rotation = record["rotations"].get(what)
        if step == "start":
            changed = _start_rotation(record, what)
            started = record["rotations"][what]
            if not any(started.get(section) for section in ("minions", "db", KEYS)):
                del record["rotations"][what]  # nothing of that kind exists yet
        elif step == "switch":
            if rotation is None:
                raise SecretsError(f"no rotation of {what} is under way: run step=start first")
            changed = rotation["step"] != SWITCHED
            rotation["step"] = SWITCHED
        else:
            changed = rotation is not None and _retire_rotation(record, what)
        rotation = record["rotations"].get(what)
        # Rendered even when the record did not change: a step re-run after a failure
        # midway (record saved, a file not) writes what is missing.
        files = _save_and_render(directory, record)
        changed = changed or bool(files)
        return {
            "changed": changed,
            "state": rotation["step"] if rotation else "done",
            "minions": sorted(rotation["minions"]) if rotation else [],
            "files": files,
        }


def change_storage_nodes(
    directory: Path,
    add: dict[str, str] | None = None,
    drop: Iterable[str] = (),
    volumes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Add nodes (id: private address) to the site's `storage_nodes`, their volume devices
    (id: path) to `storage_volumes`, and drop others, under the writer's lock (two runs of
    fleet.up or a secrets.init meanwhile lose nothing). The masters stay pinned as they were
    (site_pillar.changed_storage_nodes). Returns {"changed", "storage_nodes",
    "storage_masters", "storage_master_addresses", "storage_volumes"}."""
    add, drop, volumes = dict(add or {}), list(drop), dict(volumes or {})
    for node_id in [*add, *drop, *volumes]:
        if not check_minion_id(node_id).startswith("st-"):
            raise SecretsError(f"{node_id} is not a storage node (st-*)")
    for node_id, address in add.items():
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise SecretsError(f"{node_id}: {address!r} is not an IP address") from None
    directory = Path(directory)
    with _FILES.locked(directory):
        record = load_record(directory, must_exist=True)
        before = _recorded_site(directory, record)
        facts = _SITE.changed_storage_nodes(before, add, drop, volumes)
        record["site"] = facts
        files = _save_and_render(directory, record)
        keys = ("storage_nodes", "storage_masters", "storage_master_addresses", "storage_volumes")
        return {"changed": bool(files), **{key: facts.get(key) for key in keys}}


def _load_by_path(relative: str, name: str) -> ModuleType:
    """A file of the checkout this `_utils/` is in (the master's utils_dirs point into its
    checkout), loaded by path because Salt's Python has no ccmirror installed: the queue's own
    token form and hash (ccmirror_common/tokens.py, one file for both sides), and the site
    facts' half of this writer (site_pillar.py beside it)."""
    path = Path(__file__).resolve().parent.parent / relative
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_TOKENS = _load_by_path("ccmirror_common/tokens.py", "ccmirror_common_tokens")
hash_token = _TOKENS.hash_token
new_queue_token = _TOKENS.new_token

# The site facts' half (site_pillar.py), as this writer's callers have always reached it.
_SITE = _load_by_path("_utils/site_pillar.py", "ccmirror_site_pillar")
SecretsError = _SITE.SecretsError
SITE_DEFAULTS = _SITE.SITE_DEFAULTS
site_facts = _SITE.site_facts
pin_storage_masters = _SITE.pin_storage_masters
check_minion_id = _SITE.check_minion_id
# Atomic 0600 writes, the writer's lock, YAML blocks, ssh-keygen (private_files.py).
_FILES = _load_by_path("_utils/private_files.py", "ccmirror_private_files")


def minion_pillar(record: dict[str, Any], minion_id: str) -> dict[str, Any]:
    """What one minion may know, by its role (the prefix of its id), at the record's point
    in each rotation."""
    minions = record["minions"]
    if minion_id.startswith("hv-"):
        return {"harvester": _harvester_pillar(record, minion_id)}
    if minion_id.startswith("dl-"):
        return {
            "downloader": {
                "queue_token": _in_use(record, "queue_tokens", minion_id, "queue_token"),
                "ssh_key": _in_use(record, "storage_key", minion_id, "ssh_private_key"),
                "storage_host_key": record["keys"][STORAGE_HOST_KEY]["public"],
                "s3": _s3_identity(record, minion_id, _in_use),
            }
        }
    downloaders = sorted(other for other in minions if other.startswith("dl-"))
    if minion_id.startswith("db-"):
        users = {
            MIGRATE_DB_USER: _in_use(record, "db_passwords", None, "migrate_password"),
            QUEUE_DB_USER: _in_use(record, "db_passwords", None, "queue_password"),
        }
        for other in sorted(minions):
            if other.startswith("hv-"):
                users[other] = _in_use(record, "db_passwords", other, "db_password")
        users[FILER_DB_USER] = record["db"]["filer_password"]
        return {
            "db": {"passwords": users},
            "queue": {"tokens": {other: _token_hashes(record, other) for other in downloaders}},
            "storage_audit": dict(record["keys"][STORAGE_AUDIT]),
            "catalog_backup": _backup_key(record, _in_use),
            "backup_target": _backup_target_keys(record),
        }
    if minion_id.startswith("bk-"):
        return {"storage": {"s3_identities": _backup_identities(record)}}
    if minion_id.startswith("st-"):
        host_key = record["keys"][STORAGE_HOST_KEY]
        authorized: dict[str, str] = {}
        for other in downloaders:
            authorized[other] = _in_use(record, "storage_key", other, "ssh_public_key")
            other_key = _not_in_use(record, "storage_key", other, "ssh_public_key")
            if other_key:
                # The label is only the line's comment in authorized_keys.
                authorized[f"{other}.{_other_label(record, 'storage_key')}"] = other_key
        return {
            "storage": {
                "host_key": {"private": host_key["private"], "public": host_key["public"]},
                "authorized_keys": authorized,
                "s3_identities": _s3_identities(record, downloaders),
                "s3_revoked": sorted(set(record.get(FORGOTTEN_DOWNLOADERS, [])) - set(downloaders)),
                "filer_db_password": record["db"]["filer_password"],
            }
        }
    return {}


def load_record(directory: Path, must_exist: bool = False) -> dict[str, Any]:
    """The record of every secret made so far, with its sections present."""
    path = Path(directory) / RECORD_FILE
    if not path.exists() and (Path(directory) / LEGACY_RECORD_FILE).exists():
        path = Path(directory) / LEGACY_RECORD_FILE
    if not path.exists():
        if must_exist:
            raise SecretsError(f"no private pillar root at {directory}: run secrets.init first")
        record: dict[str, Any] = {}
    else:
        record = json.loads(path.read_text(encoding="utf-8"))
    for key in ("minions", "keys", "db", "site", "rotations"):
        record.setdefault(key, {})
    return record


# ---------------------------------------------------------------------------------------
# The plain layer's helpers.


def _harvester_pillar(record: dict[str, Any], minion_id: str) -> dict[str, Any]:
    own = record["minions"][minion_id]
    pillar: dict[str, Any] = {
        "db_password": _in_use(record, "db_passwords", minion_id, "db_password")
    }
    if "flickr_api_key" in own:  # a real master has none until set_flickr_key
        # Unsigned: the key alone (the secret stays on the master); signed: secret and token too.
        pillar["flickr"] = {"api_key": own["flickr_api_key"]}
        if own.get("flickr_oauth"):
            pillar["flickr"].update(api_secret=own["flickr_secret"], **own["flickr_oauth"])
    return pillar


def _s3_identity(record: dict[str, Any], minion_id: str, which: Any) -> dict[str, str] | None:
    """A downloader's S3 key pair as `which` (_in_use, _not_in_use) picks it; None when
    `_not_in_use` finds no rotation."""
    access = which(record, "storage_key", minion_id, "s3_access_key")
    if not access:
        return None
    return {
        "access_key": access,
        "secret_key": which(record, "storage_key", minion_id, "s3_secret_key"),
    }


def _backup_key(record: dict[str, Any], which: Any) -> dict[str, str] | None:
    """The catalog backup's S3 key pair as `which` (_in_use, _not_in_use) picks it."""
    access = which(record, "storage_key", None, BACKUP_KEY_FIELDS[0])
    if not access:
        return None
    secret = which(record, "storage_key", None, BACKUP_KEY_FIELDS[1])
    return {"access_key": access, "secret_key": secret}


def _s3_identities(record: dict[str, Any], downloaders: list[str]) -> dict[str, dict]:
    """What the S3 gateways accept: each downloader's key (both during a rotation, as sshd's
    authorized_keys), the admin, the audit and db-1's catalog backup (both of its keys during
    a storage_key rotation). S3 keys are shared secrets: the gateway must
    hold them all, so only storage droplets get this list."""
    identities = {
        "admin": dict(record["keys"][STORAGE_ADMIN]),
        "audit": dict(record["keys"][STORAGE_AUDIT]),
    }
    identities["backup"] = _backup_key(record, _in_use)
    backup_other = _backup_key(record, _not_in_use)
    if backup_other:
        identities[f"backup.{_other_label(record, 'storage_key')}"] = backup_other
    for other in downloaders:
        identities[other] = _s3_identity(record, other, _in_use)
        other_key = _s3_identity(record, other, _not_in_use)
        if other_key:
            identities[f"{other}.{_other_label(record, 'storage_key')}"] = other_key
    return identities


def _backup_target_keys(record: dict[str, Any]) -> dict[str, Any]:
    """db-1's keys on the backup cluster: the reader's (backup-lag, restores), and the sink's
    (Write only) for `audit.backup`'s copies of what filer.backup left out."""
    keys: dict[str, Any] = dict(_in_use(record, "backup_keys", KEYS, BACKUP_S3_KEYS["reader"]))
    keys["sink"] = dict(_in_use(record, "backup_keys", KEYS, BACKUP_S3_KEYS["sink"]))
    return keys


def _backup_identities(record: dict[str, Any]) -> dict[str, dict]:
    """What bk-*'s gateway accepts: its admin, the sink and the reader, each with its other
    key too during a backup_keys rotation (grouped by name in s3.json, as the downloaders')."""
    identities = {}
    for name, key in BACKUP_S3_KEYS.items():
        identities[name] = dict(_in_use(record, "backup_keys", KEYS, key))
        other = _not_in_use(record, "backup_keys", KEYS, key)
        if other:
            identities[f"{name}.{_other_label(record, 'backup_keys')}"] = dict(other)
    return identities


def _current(record: dict[str, Any], owner: str | None, field: str) -> Any:
    """The value in the record: `owner` is a minion id, None for `db`, or KEYS."""
    if owner is None or owner == KEYS:
        return record["db" if owner is None else KEYS][field]
    return record["minions"][owner][field]


def _next(record: dict[str, Any], what: str, owner: str | None, field: str) -> Any:
    rotation = record["rotations"].get(what)
    if rotation is None:
        return None
    if owner is None or owner == KEYS:
        section = rotation.get("db" if owner is None else KEYS, {})
    else:
        section = rotation["minions"].get(owner, {})
    return section.get(field)


def _in_use(record: dict[str, Any], what: str, minion_id: str | None, field: str) -> Any:
    """The value clients use: the next one once its rotation is switched."""
    upcoming = _next(record, what, minion_id, field)
    if upcoming and record["rotations"][what]["step"] == SWITCHED:
        return upcoming
    return _current(record, minion_id, field)


def _not_in_use(record: dict[str, Any], what: str, minion_id: str | None, field: str) -> Any:
    """During a rotation, the value verifiers accept besides the one in use; else ""."""
    upcoming = _next(record, what, minion_id, field)
    if not upcoming:
        return ""
    if record["rotations"][what]["step"] == SWITCHED:
        return _current(record, minion_id, field)
    return upcoming


def _other_label(record: dict[str, Any], what: str) -> str:
    return "previous" if record["rotations"][what]["step"] == SWITCHED else "next"


def _token_hashes(record: dict[str, Any], minion_id: str) -> str | list[str]:
    """The queue's hash of a downloader's token; during a rotation both hashes, the one in
    use first (the queue then accepts either, and the worker keeps its name)."""
    in_use = hash_token(_in_use(record, "queue_tokens", minion_id, "queue_token"))
    other = _not_in_use(record, "queue_tokens", minion_id, "queue_token")
    return [in_use, hash_token(other)] if other else in_use


def _ensure_secrets(record: dict[str, Any], minion_id: str, throwaway_flickr_keys: bool) -> None:
    """Make what `minion_id` needs, keeping whatever was made for it before."""
    own = record["minions"].setdefault(minion_id, {})
    if minion_id.startswith("hv-"):
        if throwaway_flickr_keys:
            own.setdefault("flickr_api_key", secrets.token_hex(16))  # a Flickr key's shape
            own.setdefault("flickr_secret", secrets.token_hex(8))
        own.setdefault("db_password", _new_value("db_password"))
    elif minion_id.startswith("dl-"):
        own.setdefault("queue_token", _new_value("queue_token"))
        _fill_next(own, ROTATED_FIELDS["storage_key"]["dl-"], minion_id)
    if STORAGE_HOST_KEY not in record["keys"]:
        private, public = _FILES.ssh_keygen("ccmirror-storage-host")
        record["keys"][STORAGE_HOST_KEY] = {"private": private, "public": public}
    for name in (STORAGE_ADMIN, STORAGE_AUDIT, *BACKUP_S3_KEYS.values()):
        if name not in record["keys"]:
            record["keys"][name] = _new_key_pair()
    for field in ("migrate_password", "queue_password", "filer_password", *BACKUP_KEY_FIELDS):
        record["db"].setdefault(field, _new_value(field))


def _new_value(field: str) -> str:
    if field == "queue_token":
        return new_queue_token()
    if field.endswith("s3_access_key"):  # AWS's shape: 20 upper-case letters and digits
        return "CCM" + "".join(secrets.choice(ACCESS_KEY_CHARS) for _ in range(17))
    if field.endswith("s3_secret_key"):
        return secrets.token_urlsafe(30)  # 40 characters, as AWS's
    return secrets.token_urlsafe(24)  # the database passwords


def _new_key_pair() -> dict[str, str]:
    return {"access_key": _new_value("s3_access_key"), "secret_key": _new_value("s3_secret_key")}


def _start_rotation(record: dict[str, Any], what: str) -> bool:
    """Make a next value for every field `what` renews that has none yet (a re-run, or a
    minion added since the start, gets what is missing). Once switched, nothing changes."""
    rotation = record["rotations"].setdefault(what, {"step": STARTED, "minions": {}, "db": {}})
    if rotation["step"] == SWITCHED:
        return False
    changed = False
    for prefix, fields in ROTATED_FIELDS[what].items():
        if prefix == "db":
            changed |= _fill_next(rotation["db"], fields, "db")
            continue
        if prefix == KEYS:
            pairs = rotation.setdefault(KEYS, {})
            for name in (name for name in fields if name not in pairs):
                pairs[name], changed = _new_key_pair(), True
            continue
        for minion_id in sorted(record["minions"]):
            if minion_id.startswith(prefix):
                section = rotation["minions"].setdefault(minion_id, {})
                changed |= _fill_next(section, fields, minion_id)
    return changed


def _fill_next(section: dict[str, str], fields: tuple[str, ...], owner: str) -> bool:
    """The fields `section` lacks, made (an ssh key pair together); True when any was."""
    if all(field in section for field in fields):
        return False
    if "ssh_private_key" in fields and "ssh_private_key" not in section:
        section["ssh_private_key"], section["ssh_public_key"] = _FILES.ssh_keygen(
            f"ccmirror-{owner}"
        )
    for field in fields:
        section.setdefault(field, _new_value(field))
    return True


def _retire_rotation(record: dict[str, Any], what: str) -> bool:
    """The next values become the current ones and the old are forgotten. A rotation that
    was never switched cannot be retired: clients would lose the value they use."""
    rotation = record["rotations"][what]
    if rotation["step"] != SWITCHED:
        raise SecretsError(f"the rotation of {what} is not switched yet: run step=switch first")
    record["db"].update(rotation["db"])
    record["keys"].update(rotation.get(KEYS, {}))
    for minion_id, values in rotation["minions"].items():
        if minion_id in record["minions"]:
            record["minions"][minion_id].update(values)
    del record["rotations"][what]
    return True


def _recorded_site(directory: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The facts recorded before; else those of a hand-written site.sls (as in
    pillar/secrets.example)."""
    if record["site"]:
        return record["site"]
    path = directory / "site.sls"
    if path.exists():
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if isinstance(data, dict) and isinstance(data.get("site"), dict):
            return data["site"]
    return {}


def _save_and_render(directory: Path, record: dict[str, Any]) -> list[str]:
    """The record first, then every file rendered from it: a run that stops half-way is
    completed by the next. Returns the files whose content or mode changed."""
    changed: list[str] = []
    for minion_id in sorted(record["minions"]):  # a record from an older release: what is new
        _ensure_secrets(record, minion_id, throwaway_flickr_keys=False)
    text = json.dumps(record, indent=1, sort_keys=True)
    if _FILES.write_if_changed(directory / RECORD_FILE, text, 0o600):
        changed.append(RECORD_FILE)
    (directory / LEGACY_RECORD_FILE).unlink(missing_ok=True)
    if _FILES.write_if_changed(directory / "site.sls", _FILES.sls({"site": record["site"]}), 0o644):
        changed.append("site.sls")
    minions_dir = directory / "minions"
    minions_dir.mkdir(exist_ok=True)
    os.chmod(minions_dir, 0o700)
    for minion_id in sorted(record["minions"]):
        pillar = minion_pillar(record, minion_id)
        path = minions_dir / f"{minion_id}.sls"
        if pillar and _FILES.write_if_changed(path, _FILES.sls(pillar), 0o600):
            changed.append(f"minions/{minion_id}.sls")
    return changed
