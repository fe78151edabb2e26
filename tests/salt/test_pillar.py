"""Each minion's pillar holds its own secrets and no other's (targeted by minion id)."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tests.salt.conftest import MINIONS, ROOT, SITE, make_salt_call

# Ids a minion could be given (a key accepted by mistake, a hand-made minion config) that
# are globs, paths or near-misses of real ids: Salt matches the top file's targets and
# expands globs in SLS names, so each once reached other minions' files.
HOSTILE_IDS = [
    "dl-?",
    "*-1",
    "?*",
    "*",
    "dl-[12]",
    "DL-1",
    "dl-1 ",
    "dl-1\n",
    "../minions/db-1",
    "minions/db-1",
    "dl-1.example",
    "db-1.sls",
]


def pillar(salt_call, minion: str) -> dict:
    return salt_call(minion, "pillar.items", "unmask=True")


def secrets_of(private_root, minion: str) -> list[str]:
    """Every string value in the minion's own secrets file."""
    data = yaml.safe_load((private_root / "minions" / f"{minion}.sls").read_text())
    found: list[str] = []

    def walk(value) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, str):
            found.append(value)

    walk(data)
    return found


def leaked(items: dict, private_root, minion: str, others: tuple[str, ...]) -> dict:
    """Other minions' secrets found in `items`, but for those this minion shares with them
    (its own password in db-1's list) and public keys."""
    text = json.dumps(items)
    own = set(secrets_of(private_root, minion))
    found: dict[str, list[str]] = {}
    for other in others:
        theirs = [s for s in secrets_of(private_root, other) if s not in own and "ssh-" not in s]
        seen = [s[:8] for s in theirs if s in text]
        if seen:
            found[other] = seen
    return found


def test_downloader_sees_no_flickr_key_and_no_database_password(salt_call, private_root):
    items = pillar(salt_call, "dl-1")
    assert items["downloader"]["queue_token"].startswith("ccmq_")
    assert "harvester" not in items and "db" not in items and "storage" not in items
    assert not leaked(items, private_root, "dl-1", ("hv-1", "db-1", "dl-2", "st-1"))


def test_harvester_sees_only_its_own_flickr_key(salt_call, private_root):
    items = pillar(salt_call, "hv-1")
    own = yaml.safe_load((private_root / "minions" / "hv-1.sls").read_text())["harvester"]
    assert items["harvester"]["flickr"]["api_key"] == own["flickr"]["api_key"]
    assert items["harvester"]["db_password"] == own["db_password"]
    assert not leaked(items, private_root, "hv-1", ("hv-2", "db-1", "dl-1", "st-1"))
    assert "downloader" not in items and "db" not in items


def test_s3_keys_go_to_their_downloader_and_to_the_storage_gateways_only(salt_call):
    """S3 keys are shared secrets: the gateway on every storage droplet holds each
    downloader's, the audit's (db-1) and the admin's; a downloader only its own; the admin key
    no other minion."""
    dl1, dl2 = (pillar(salt_call, m)["downloader"]["s3"] for m in ("dl-1", "dl-2"))
    assert dl1["access_key"] != dl2["access_key"] and dl1["secret_key"] != dl2["secret_key"]
    identities = pillar(salt_call, "st-1")["storage"]["s3_identities"]
    assert identities["dl-1"] == dl1 and identities["dl-2"] == dl2
    db = pillar(salt_call, "db-1")
    assert identities["audit"] == db["storage_audit"]
    admin = identities["admin"]["secret_key"]
    assert admin != db["storage_audit"]["secret_key"]
    for minion in ("master", "db-1", "hv-1", "dl-1"):
        assert admin not in json.dumps(pillar(salt_call, minion)), minion
    assert (
        pillar(salt_call, "st-1")["storage"]["filer_db_password"]
        == (db["db"]["passwords"]["seaweedfs"])
    )


def test_master_and_storage_get_no_database_or_flickr_secret(salt_call):
    for minion in ("master", "st-1"):
        items = pillar(salt_call, minion)
        assert "harvester" not in items and "db" not in items and "downloader" not in items


def test_a_minion_without_its_secrets_fails_to_render_naming_the_key(
    salt_call_bin, tmp_path_factory
):
    """No private root: the role's state names the missing pillar key instead of writing
    an empty token or key."""
    salt_call = make_salt_call(
        salt_call_bin, tmp_path_factory.mktemp("salt-no-secrets"), [ROOT / "pillar"]
    )
    for minion, key in (("dl-1", "downloader:queue_token"), ("hv-1", "harvester:flickr:api_key")):
        result = salt_call(minion, "state.show_highstate", check=False)
        assert isinstance(result, list), f"{minion} rendered without its secrets"
        assert key in " ".join(result)


def test_a_roles_site_settings_override_its_defaults_for_that_role_only(
    salt_call_bin, private_root, tmp_path_factory
):
    """settings/<role>.sls in the private root (by hand) merges over the role's pillar: a
    changed key wins, its siblings and the minion's own secrets stay; other roles never see
    it."""
    root = tmp_path_factory.mktemp("salt-settings")
    shutil.copytree(private_root, root / "private")
    (root / "private" / "settings").mkdir()
    (root / "private" / "settings" / "db.sls").write_text(
        yaml.safe_dump({"queue": {"settings": {"lease_seconds": 45}}})
    )
    salt_call = make_salt_call(salt_call_bin, root / "config", [ROOT / "pillar", root / "private"])
    queue = pillar(salt_call, "db-1")["queue"]
    assert queue["settings"] == {
        "lease_seconds": 45,
        "max_items": 1000,
        "max_open_leases": 4,
        "max_body_bytes": 0,
    }
    assert queue["tokens"], "the minion's own secrets are still there"
    for other in ("dl-1", "st-1"):
        assert "queue" not in pillar(salt_call, other), other


def raw_text(items: dict) -> str:
    """Every string in `items`, as is (json.dumps would escape a private key's newlines)."""
    found: list[str] = []

    def walk(value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                found.append(str(key))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        else:
            found.append(str(value))

    walk(items)
    return "\n".join(found)


def every_secret(private_root) -> set[str]:
    """Every secret string of every minion's file (public keys are not secrets)."""
    return {
        value
        for minion in MINIONS
        if (private_root / "minions" / f"{minion}.sls").exists()
        for value in secrets_of(private_root, minion)
        if "ssh-" not in value
    }


@pytest.mark.parametrize("minion", HOSTILE_IDS)
def test_an_id_that_is_a_glob_or_a_path_gets_no_secret_and_no_site_facts(
    salt_call, private_root, minion
):
    """pillar/top.sls renders `site` and `minions.<id>` only for ids of lower-case letters,
    digits and '-': any other id gets the roles' defaults at most."""
    items = pillar(salt_call, minion)
    text = raw_text(items)
    seen = sorted(value[:8] for value in every_secret(private_root) if value in text)
    assert not seen, f"{minion!r} was served other minions' secrets: {seen}"
    assert "site" not in items, f"{minion!r} was served the site's facts"
    assert SITE["storage_host"] not in text and SITE["db_host"] not in text
    assert not {"db", "queue", "harvester", "storage"} & set(items), sorted(items)
    assert "queue_token" not in items.get("downloader", {})


def test_every_plain_id_still_gets_its_own_secrets_and_the_site(salt_call, private_root):
    for minion in MINIONS:
        items = pillar(salt_call, minion)
        assert items["site"]["db_host"] == SITE["db_host"], minion
        text = raw_text(items)
        own = secrets_of(private_root, minion) if minion != "master" else []
        assert all(value in text for value in own), minion
