"""The `secrets` runner: the master's private pillar root (site facts, one file of secrets per
minion, the record they are rendered from; see _utils/private_pillar.py, its one writer,
reached as ``__utils__["private_pillar.*"]``).

The private root is the master's second `pillar_roots: base` entry (or the master option
`ccmirror_private_pillar`): a directory outside git, mode 0700. The runner functions Salt
loads (`init`, `set_flickr_key`, `rotate`, `forget`; see `__load__`) find it and the accepted
minions from the master's config. (`ccmirror_private_pillar` only tells the runner where to
write: minions see the files only if the same path is in `pillar_roots: base`.)

Secret values are never logged and never returned: runner returns name minions and files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

# Salt loads only these as runner functions.
__load__ = ["init", "set_flickr_key", "rotate", "forget", "storage_nodes"]

ROLE_PREFIXES = ("db-", "hv-", "dl-", "st-", "bk-")  # the roles that have secrets
OAUTH_FIELDS = ("oauth_token", "oauth_token_secret")  # a signing harvester's access token


class RefusedError(ValueError):
    """An argument or a master setting the runner cannot use (the writer's own refusals are
    its SecretsError, a ValueError too); raised before anything is written."""


def has_role(minion_id: str) -> bool:
    """Whether the id is one of the roles that have secrets (db-, hv-, dl-, st-)."""
    return minion_id.startswith(ROLE_PREFIXES)


def read_flickr_key_file(path: Path) -> dict[str, Any]:
    """{key, secret, oauth_token, oauth_token_secret} from a YAML file `{key: ..., secret:
    ...}`, with the access token's two fields when signed (`harvester flickr-auth` writes
    all four); a token field not given is None."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RefusedError(f"cannot read {path}: {exc.__class__.__name__}") from None
    if not isinstance(data, dict) or not {"key", "secret"} <= set(data):
        raise RefusedError(f"{path} must be YAML with `key:` and `secret:`")
    unknown = set(data) - {"key", "secret", *OAUTH_FIELDS}
    if unknown:
        raise RefusedError(f"{path}: unknown fields {sorted(unknown)}")
    return {name: data.get(name) for name in ("key", "secret", *OAUTH_FIELDS)}


def access_token(oauth_token: str | None, oauth_token_secret: str | None) -> tuple[str, str] | None:
    """The access token's pair, or None when neither is given; one without the other is
    refused (the key would sign with half a token)."""
    if oauth_token is None and oauth_token_secret is None:
        return None
    if oauth_token is None or oauth_token_secret is None:
        raise RefusedError(
            "signed calls need the consumer secret, oauth_token and oauth_token_secret "
            "together: pass both token fields or neither"
        )
    return oauth_token, oauth_token_secret


# ---------------------------------------------------------------------------------------
# The runner functions (Salt injects __opts__).


def init(site: dict[str, Any] | None = None) -> dict[str, Any]:
    """
    Create the private pillar root, or bring it up to date with the minions the master has
    accepted: the storage host key pair; per downloader its storage SSH key pair and queue
    token (the plain token in its own file, the sha256 hashes in the db minion's); database
    passwords for `migrate`, `queue` and each harvester. Secrets made before are kept, so
    running it again after `fleet.up` only adds what the new minions need; then refresh
    pillar and apply the states of db-*, st-* and the new minions.

    A harvester's Flickr key is not made here: set it with `secrets.set_flickr_key`.

    site
        The site's facts (db_host, storage_host, and optionally db_port, queue_port,
        storage_port, private_network, flickr_api_url), merged over those recorded before.
        Needed on the first run unless the root has a site.sls already.

    CLI Example::

        salt-run secrets.init site='{db_host: 10.0.0.2, storage_host: 10.0.0.3}'
        salt-run secrets.init
    """
    if site is not None and not isinstance(site, dict):
        return _refused(RefusedError("site must be a mapping: site='{db_host: 10.0.0.2, ...}'"))
    try:
        directory = _private_root()
        accepted = _accepted_minions()
        with_secrets = [minion_id for minion_id in accepted if has_role(minion_id)]
        summary = _writer("write_private_root")(directory, with_secrets, site)
    except ValueError as error:  # RefusedError, or the writer's SecretsError
        return _refused(error)
    record = _writer("load_record")(directory)
    log.info("secrets.init: %s added, %d files written", summary["added"], len(summary["files"]))
    return {
        "private_root": str(directory),
        "changed": bool(summary["files"]),
        "minions": sorted(set(record["minions"])),
        "added": summary["added"],
        "files": summary["files"],
        "no_secrets": [minion_id for minion_id in accepted if not has_role(minion_id)],
        # Keys deleted since: their secrets stay listed until `secrets.forget`.
        "not_accepted": sorted(set(record["minions"]) - set(accepted)),
        "missing_flickr_key": sorted(
            minion_id
            for minion_id, own in record["minions"].items()
            if minion_id.startswith("hv-") and "flickr_api_key" not in own
        ),
    }


def set_flickr_key(
    minion: str,
    key: str | None = None,
    secret: str | None = None,
    from_file: str | None = None,
    oauth_token: str | None = None,
    oauth_token_secret: str | None = None,
) -> dict[str, Any]:
    """
    Set one harvester's Flickr API key (in its own pillar file) and secret and, for signed
    calls (every safety level), the access token `harvester flickr-auth` made for it. With a
    token the harvester's pillar gets the key, the secret and the token; without, the key
    alone (the secret stays in the record on the master, and a token set before is dropped:
    a token belongs to one key). Nothing else changes. Refuses a minion that is not a
    harvester (hv-*) or that `secrets.init` has not seen, and half a token. Rotating a key is
    setting the new one: then apply the harvester's states.

    This runner neither returns nor logs the key. Salt itself, though, records a runner's
    arguments in the master's job cache (root only, for `keep_jobs_seconds`) and in its
    debug log: for a real key, pass `from_file`, a YAML file `{key: ..., secret: ...,
    oauth_token: ..., oauth_token_secret: ...}` readable by root only (the token file
    `harvester flickr-auth` writes), and Salt records only its path.

    CLI Example::

        salt-run secrets.set_flickr_key minion=hv-1 from_file=/root/hv-1-flickr.yaml
        salt-run secrets.set_flickr_key minion=hv-1 key=0123abcd... secret=89ef...
    """
    try:
        if from_file is not None:
            if any(v is not None for v in (key, secret, oauth_token, oauth_token_secret)):
                raise RefusedError("pass the key's fields, or from_file, not both")
            fields = read_flickr_key_file(Path(from_file))
            key, secret = fields["key"], fields["secret"]
            oauth_token, oauth_token_secret = (fields[name] for name in OAUTH_FIELDS)
        oauth = access_token(oauth_token, oauth_token_secret)
        changed = _writer("store_flickr_key")(_private_root(), minion, key, secret, oauth)
    except ValueError as error:  # RefusedError, or the writer's SecretsError
        return _refused(error, minion=minion)
    log.info("secrets.set_flickr_key: %s %s", minion, "changed" if changed else "unchanged")
    return {"minion": minion, "changed": changed}


def rotate(what: str, step: str = "start") -> dict[str, Any]:
    """
    The files' side of a rotation with zero downtime, in three steps; apply the states
    named between them (orch.rotate does it all). Every step is idempotent: after a failure
    midway, run the same step again, then go on.

    what=storage_key (each downloader's SSH and S3 keys to storage, and db-1's catalog
    backup S3 key)
        step=start   a new key pair per downloader beside the current one; storage's
                     authorized_keys lists both, downloaders still use the current one.
                     Apply st-*'s states.
        step=switch  downloaders and the catalog backup use the new key (storage still
                     accepts both). Apply dl-*'s and db-*'s states and check each
                     downloader with a real push (ccmirror.check_storage).
        step=retire  the old key is forgotten; storage accepts only the new one. Apply
                     st-*'s states: the old key is refused from then on.

    what=queue_tokens (each downloader's bearer token)
        step=start   a new token per downloader; the queue's tokens file lists the hashes
                     of both (the worker keeps its name). Apply db-*'s states.
        step=switch  downloaders use the new token. Apply dl-*'s states.
        step=retire  the queue forgets the old hashes. Apply db-*'s states.
        (The tokens file then maps a worker to a list of hashes: harvester/queue/tokens.py
        must accept a list for this rotation to be free of 401s.)

    what=db_passwords (the migrate, queue and harvester database users)
        step=start   new passwords are made; nothing changes for any minion yet.
        step=switch  the database users and their programs get the new passwords at once.
                     MariaDB keeps one password per user, so this step has downtime: apply
                     db-*'s states (the users' passwords change; open connections live on)
                     then hv-*'s at once; until a harvester's config is rewritten and it
                     restarts, its new connections are refused and its task leases wait.
        step=retire  the old passwords are forgotten. Nothing to apply.

    what=backup_keys (the backup cluster's S3 keys: bk-*'s admin, the sink its
    `weed filer.backup` writes with, and the reader db-1 measures the lag and restores with)
        step=start   a new pair for each; bk-*'s gateway accepts both. Apply bk-*'s states.
        step=switch  bk-* (its bucket and filer.backup) and db-1 use the new pairs. Apply
                     bk-*'s and db-*'s states, then check db-1 reads the backup
                     (ccmirror_audit_s3.backup_lag).
        step=retire  the old pairs are forgotten. Apply bk-*'s states: refused from then on.

    Returns what changed and the rotation's state ("started", "switched" or "done").

    CLI Example::

        salt-run secrets.rotate what=storage_key
        salt-run secrets.rotate what=storage_key step=switch
        salt-run secrets.rotate what=storage_key step=retire
        salt-run secrets.rotate what=backup_keys
    """
    try:
        summary = _writer("rotate_secrets")(_private_root(), what, step)
    except ValueError as error:  # RefusedError, or the writer's SecretsError
        return _refused(error, what=what, step=step)
    log.info("secrets.rotate: %s step %s -> %s", what, step, summary["state"])
    return {"what": what, "step": step, **summary, "apply": _apply_after(what, step)}


def forget(minion: str) -> dict[str, Any]:
    """
    Forget a removed minion's secrets (after `fleet.down` / `fleet.destroy` deleted its
    key): its pillar file goes, and the db's and storage's files stop listing its queue
    token hash and its storage key; apply db-* and st-* states to revoke them there.
    Refuses a minion whose key the master still accepts (delete it first: `salt-key -d`).

    CLI Example::

        salt-run secrets.forget minion=dl-3
    """
    try:
        _writer("check_minion_id")(minion)
        if minion in _accepted_minions():
            raise RefusedError(f"minion {minion}'s key is still accepted: delete it first")
        changed = _writer("forget_minion")(_private_root(), minion)
    except ValueError as error:  # RefusedError, or the writer's SecretsError
        return _refused(error, minion=minion)
    log.info("secrets.forget: %s %s", minion, "forgotten" if changed else "unknown")
    return {"minion": minion, "changed": changed, "apply": ["db-*", "st-*"] if changed else []}


def storage_nodes(
    add: dict[str, str] | None = None,
    drop: list[str] | str | None = None,
    volumes: dict[str, str] | None = None,
):
    """
    Add SeaweedFS nodes to the site's facts (``site:storage_nodes``, id: private address) or
    drop them, under the private root's lock; ``volumes`` records nodes' volume devices
    (``site:storage_volumes``, id: device path, which salt/storage/volume.sls mounts), and a
    dropped node's device goes with it. ``fleet.up role=storage`` and
    ``fleet.destroy name=st-N`` call it. The masters stay pinned (``site:storage_masters``
    and the addresses they started with, ``site:storage_master_addresses``): a new node is a
    volume server, and a dropped master's address stays in the masters' peers. Then apply
    the states of every st-* (and of the downloaders and db-* when the first node changed:
    their S3 endpoint is the first node's gateway unless site:storage_endpoint names one).

    CLI Example::

        salt-run secrets.storage_nodes add='{st-4: 10.0.0.9}'
        salt-run secrets.storage_nodes drop=st-3
        salt-run secrets.storage_nodes volumes='{st-4: /dev/disk/by-id/scsi-0DO_Volume_x-st-4}'
    """
    try:
        for name, value in (("add", add), ("volumes", volumes)):
            if value is not None and not isinstance(value, dict):
                raise RefusedError(f"{name} must be a mapping: {name}='{{st-4: ...}}'")
        dropped = [drop] if isinstance(drop, str) else list(drop or [])
        summary = _writer("change_storage_nodes")(_private_root(), add or {}, dropped, volumes)
    except (TypeError, ValueError) as error:  # RefusedError, or the writer's SecretsError
        return _refused(ValueError(str(error)))
    log.info("secrets.storage_nodes: %s", sorted(summary["storage_nodes"] or {}))
    return {**summary, "apply": ["st-*"] if summary["changed"] else []}


def _refused(error: ValueError, **names: str) -> dict[str, Any]:
    """One clear error, no traceback; nothing was written. salt-run exits with the
    return's `retcode` (the context's marks the job failed for orchestration)."""
    __context__["retcode"] = 1  # noqa: F821 (Salt injects it)
    log.error("secrets: %s", error)
    return {**names, "changed": False, "error": str(error), "retcode": 1}


def _writer(name: str) -> Any:
    """A function of the private root's one writer, _utils/private_pillar.py."""
    function = __utils__.get(f"private_pillar.{name}")  # noqa: F821 (Salt injects it)
    if function is None:
        raise RefusedError("private_pillar is not loaded: the master's config needs utils_dirs")
    return function


# The roles whose states must be applied after each step (the orchestration's cue).
APPLY_AFTER = {
    "storage_key": {"start": ["st-*"], "switch": ["dl-*", "db-*"], "retire": ["st-*"]},
    "queue_tokens": {"start": ["db-*"], "switch": ["dl-*"], "retire": ["db-*"]},
    "db_passwords": {"start": [], "switch": ["db-*", "hv-*"], "retire": []},
    "backup_keys": {"start": ["bk-*"], "switch": ["bk-*", "db-*"], "retire": ["bk-*"]},
}


def _apply_after(what: str, step: str) -> list[str]:
    return list(APPLY_AFTER[what][step])


def _private_root() -> Path:
    """`ccmirror_private_pillar` from the master's config, else the second pillar root of
    `base` (the first is the checkout's pillar/, in git)."""
    configured = __opts__.get("ccmirror_private_pillar")  # noqa: F821 (Salt injects it)
    if configured:
        return Path(configured)
    roots = (__opts__.get("pillar_roots") or {}).get("base") or []  # noqa: F821
    if len(roots) < 2:
        raise RefusedError(
            "no private pillar root: set ccmirror_private_pillar or a second "
            "pillar_roots:base entry in the master's config"
        )
    return Path(roots[1])


def _accepted_minions() -> list[str]:
    """The ids of the minions whose keys the master has accepted."""
    import salt.key  # Salt's own Python has it; the plain layer must not need it

    return sorted(salt.key.get_key(__opts__).list_status("accepted").get("minions", []))  # noqa: F821
