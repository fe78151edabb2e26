"""The fleet's droplets on DigitalOcean, from the master: make, list, drain and destroy them.

``fleet.up`` makes droplets (downloaders, harvesters, storage) with a key pair made on the
master and accepted there before the droplet exists (never ``auto_accept``). Their
``user_data`` holds no secret (``_utils/fleet_join.py``): the key pair goes over SSH once,
as salt-cloud's deploy step does, with the fleet's SSH key (on the master only; registered
with DigitalOcean, which installs it for root). Then it waits for the minions to answer,
gives them their secrets (``secrets.init``), syncs modules, refreshes pillar and applies
highstate. ``fleet.down`` / ``fleet.destroy`` drain a droplet's daemon before it goes, then
delete its minion key, destroy it, forget its secrets and apply at once, on ``db-*`` and
``st-*``, the states that render the queue's tokens and storage's authorized keys (its token
and storage key are refused from then on). Both rewrite Prometheus' scrape targets on the
master (``prometheus.targets``): a droplet is scraped once it is up, and no longer once gone.
``fleet.list`` joins the droplets the API lists with their minions' answers and each
downloader's work.

Settings: ``ccmirror_fleet`` in the master's own config (_utils/fleet_droplets.py).

Over 500 lines, one module: the runner's four functions share their argument checks and the
steps below; what they call out to is in _utils/ (fleet_droplets, fleet_join, fleet_minions,
fleet_storage).

``count`` of ``fleet.up``: droplets of the role wanted in all; of ``fleet.down``: taken away.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import salt.utils.crypt

try:
    import digitalocean

    HAS_DIGITALOCEAN = True
except ImportError:  # the runner then does not load; __virtual__ says why
    HAS_DIGITALOCEAN = False

log = logging.getLogger(__name__)

__virtualname__ = "fleet"
__load__ = ["up", "down", "destroy", "list_"]
__func_alias__ = {"list_": "list"}
__opts__: dict = {}  # replaced by Salt's loader

# Roles fleet.up makes, by minion id prefix as in salt/top.sls. The database droplet is the
# static core (terraform/); storage droplets (SeaweedFS volume servers) are added here too.
ROLE_PREFIXES = {"downloader": "dl", "harvester": "hv", "storage": "st"}
# What renders a worker's access on the servers it reaches, applied alone (a highstate would
# start a storage droplet not yet set up) when its secrets are forgotten: refused at once.
REVOKE_STATES = {
    "db-": (("state.sls_id", ["queue-tokens-file-managed"], {"mods": "queue.config"}),),
    "st-": (
        ("saltutil.sync_modules", [], {}),  # ccmirror_storage_access as the master serves it
        ("ccmirror_storage_access.apply", [], {}),
    ),
}
REVOKE_TIMEOUT = 300
ACTIVE_SECONDS = 300
JOIN_SECONDS = 300
DRAIN_WAIT = 300


class FleetError(ValueError):
    """A name or an argument that cannot be used, or _utils/ not loaded; raised before anything
    changes (fleet_droplets' FleetValueError says it of settings, roles, counts and tags)."""


def __virtual__():
    if not HAS_DIGITALOCEAN:
        return False, "the fleet runner needs python-digitalocean in the master's Python"
    return __virtualname__


def check_name(name: object) -> str:
    """A droplet name by the fleet's one rule for minion ids, check_minion_id in
    _utils/private_pillar.py (which pillar/top.sls and the lab follow too)."""
    try:
        return _util("private_pillar.check_minion_id")(name)
    except ValueError as error:  # private_pillar's SecretsError
        raise FleetError(str(error)) from None


# ---------------------------------------------------------------------------------------
# The runner functions (Salt injects __opts__, __salt__, __jid_event__).


def up(
    role: str = "downloader",
    count: int = 1,
    size: str | None = None,
    region: str | None = None,
    image: str | None = None,
    tags: list[str] | str | None = None,
    highstate: bool = True,
    timeout: int = JOIN_SECONDS,
) -> dict[str, Any]:
    """
    Have ``count`` droplets of ``role`` (downloader, harvester or storage) in all: make the
    missing ones (named dl-N / hv-N / st-N, the lowest free numbers; tagged ccmirror and
    ccmirror-<role>, plus ``tags``; in the VPC), each with its minion key made and accepted
    here first and a ``user_data`` that installs Salt if absent and starts the minion. Then,
    for the new droplets and any earlier one whose steps did not all succeed: wait until each
    minion answers (``timeout`` seconds), ``secrets.init`` (their secrets), sync modules,
    refresh pillar, apply highstate (``db-*`` and ``st-*`` first: they learn the new
    minions' token and key; ``highstate=False`` skips it). Safe to run twice: a second run makes
    nothing and finishes what the first left undone.

    ``role=storage`` counts Terraform's st-* too. A new one gets its volume (or the one a
    destroyed st-N of its name left), recorded with its address in ``site:storage_volumes``
    and ``site:storage_nodes`` once active; every st-* gets highstate: the new node mounts
    it and runs a volume server the masters use at once, never a master (they stay pinned).

    Returns the droplets made, those kept, each step's seconds, and per minion what failed.

    CLI Example::

        salt-run fleet.up role=downloader count=4
        salt-run fleet.up role=harvester count=2 size=s-2vcpu-2gb region=ams3 tags='[batch7]'
        salt-run fleet.up role=downloader count=1 highstate=False
        salt-run fleet.up role=storage count=4
    """
    steps = _minions("step_timer")()
    try:
        role, count = _cloud("check_role")(role, ROLE_PREFIXES), _cloud("check_count")(count)
        conf = _cloud("settings")(__opts__)
        extra_tags = _cloud("check_tags")(tags)
        highstate = _util("arguments.flag")(highstate, "highstate")
        timeout = _util("arguments.seconds")(timeout, "timeout")
        manager = _cloud("manager")(conf)
        # The fleet's SSH key at DigitalOcean (made on the master and registered once).
        conf["ssh_key_id"] = _join("ssh_key_id")(conf, f"{conf['project_tag']}-fleet")
    except ValueError as error:  # FleetError, FleetValueError, JoinError
        return _refused(error, role=role, count=count)
    project = conf["project_tag"]
    role_droplets = _cloud("droplets")(manager, f"{project}-{role}")
    all_names = {d.name for d in _cloud("droplets")(manager, None)} | _minion_keys()
    missing = max(0, count - len(role_droplets))
    names = _cloud("next_names")(ROLE_PREFIXES[role], all_names, missing)
    _progress(f"{role}: {len(role_droplets)} of {count} exist; making {', '.join(names) or 'none'}")
    made, fresh, errors = _create(conf, names, role, extra_tags, size, region, image)
    steps.done("create")
    ready_tag = _cloud("ready_tag")(project)
    pending = [d for d in role_droplets if _storage("resumable")(role, d, project, ready_tag)]
    targets = sorted({d.name for d in pending} | {d.name for d in made}, key=_cloud("name_number"))
    result: dict[str, Any] = {
        "role": role,
        "count": count,
        "made": [],
        "kept": sorted((d.name for d in role_droplets), key=_cloud("name_number")),
        "steps": steps.seconds,
        "errors": errors,
    }
    if made:
        active, not_active = _cloud("wait_active")(made, ACTIVE_SECONDS, _reporter())
        steps.done("active")
        result["made"] = [_cloud("summary")(d) for d in active]
        errors.update({d.name: "not active in time" for d in not_active})
        targets = [t for t in targets if t not in {d.name for d in not_active}]
    if targets and role == "storage":  # before its highstate: its address, its volume
        joining = [d for d in [*pending, *made] if d.name in targets]
        change = __salt__["secrets.storage_nodes"]  # noqa: F821
        volume, progress = _util("fleet_volumes.ensure_attached"), _reporter()  # made or reattached
        result["storage"] = _storage("record_nodes")(
            joining, _address_of(), change, errors, progress,
            lambda droplet: volume(conf, manager, droplet, progress),
        )  # fmt: skip
        targets = [t for t in targets if t not in errors]
    if targets:
        joining = [d for d in [*pending, *made] if d.name in targets]
        _hand_over(conf, joining, fresh, timeout, errors)
        steps.done("handover")
        targets = [t for t in targets if t not in errors]
    if targets:
        init_secrets = __salt__["secrets.init"]  # noqa: F821 (Salt injects it: the runners)
        _minions("finish")(
            __opts__, targets, role, highstate, timeout, steps, errors, _reporter(), init_secrets
        )
        ready = [
            d for d in [*pending, *made] if d.name in targets and d.name not in errors and highstate
        ]
        if ready:
            _cloud("tag_droplets")(conf, ready_tag, ready)
    result["ready"] = [t for t in targets if t not in errors]
    result["scrape_targets"] = _scrape_targets(result["ready"], errors)
    result["result"] = not errors
    if errors:
        __context__["retcode"] = result["retcode"] = 1  # noqa: F821 (Salt injects it)
    return result


def down(
    role: str = "downloader",
    count: int | None = None,
    keep: int | None = None,
    wait: int = DRAIN_WAIT,
    force=False,
):
    """
    Take ``count`` droplets of ``role`` away (default 1), or as many as leave ``keep`` of
    them, highest numbers first. Each one's daemon is drained first (``ccmirror.drain``: a
    downloader finishes or releases its lease; up to ``wait`` seconds), then its minion key
    is deleted, the droplet destroyed and its secrets forgotten (``secrets.forget``; apply
    ``db-*`` and ``st-*`` afterwards to revoke its token and storage key there). A droplet
    whose minion does not answer or whose drain does not finish in time is left as it is,
    unless ``force=True``. Never takes away more droplets than there are.

    CLI Example::

        salt-run fleet.down role=downloader count=2
        salt-run fleet.down role=downloader count=1 wait=600
        salt-run fleet.down role=downloader keep=1
    """
    try:
        role = _cloud("check_role")(role, ROLE_PREFIXES)
        if role == "storage":
            raise FleetError(_storage("down_refused")())
        if keep is None:
            count = _cloud("check_count")(1 if count is None else count, least=1)
        elif count is None:
            keep = _cloud("check_count")(keep, least=0, what="keep")
        else:
            raise FleetError("give count (droplets to take away) or keep (to leave), not both")
        conf = _cloud("settings")(__opts__)
        wait, force = (
            _util("arguments.seconds")(wait, "wait"),
            _util("arguments.flag")(force, "force"),
        )
    except ValueError as error:  # FleetError, or fleet_droplets' FleetValueError
        return _refused(error, role=role, count=count, keep=keep)
    manager = _cloud("manager")(conf)
    role_droplets = {
        d.name: d for d in _cloud("droplets")(manager, f"{conf['project_tag']}-{role}")
    }
    # keep: counted against the droplets there are now (one destroyed from the console
    # meanwhile is not taken away twice).
    take = count if keep is None else max(len(role_droplets) - keep, 0)
    chosen = _cloud("last_ones")(list(role_droplets), take)
    _progress(f"{role}: taking away {', '.join(chosen) or 'none (there are none)'}")
    removed = {name: _retire(role_droplets[name], wait, force) for name in chosen}
    return _removal_result(removed, role=role, count=count, keep=keep)


def destroy(name: str, wait: int = DRAIN_WAIT, force=False):
    """
    Take one droplet away by name: drain (``wait`` seconds), delete its minion key, destroy
    it, forget its secrets (see ``fleet.down``). Only droplets tagged as the project's are
    destroyed. A name with no droplet left (destroyed from DigitalOcean's console, say) loses
    its minion key and its secrets: then apply ``db-*`` and ``st-*`` to revoke its queue token
    and storage key there. A storage droplet (st-N) leaves ``site:storage_nodes`` too (a
    master keeps its address; its volume stays for a new st-N of that name). Safe twice.

    CLI Example::

        salt-run fleet.destroy name=dl-3
        salt-run fleet.destroy name=dl-3 force=True
        salt-run fleet.destroy name=st-3
    """
    try:
        if not isinstance(name, str) or _cloud("name_number")(name) < 0:
            raise FleetError(f"name must be a droplet name such as dl-3; not {name!r}")
        check_name(name)  # a name's `$` lets a final newline through
        conf = _cloud("settings")(__opts__)
        wait, force = (
            _util("arguments.seconds")(wait, "wait"),
            _util("arguments.flag")(force, "force"),
        )
    except ValueError as error:  # FleetError, or fleet_droplets' FleetValueError
        return _refused(error, name=name)
    manager = _cloud("manager")(conf)
    found = [d for d in _cloud("droplets")(manager, conf["project_tag"]) if d.name == name]
    if not found:
        return _forget_storage_node(name, _forget_gone(name))
    removed = {name: _retire(found[0], wait, force)}
    result = _removal_result(removed, name=name)
    return _forget_storage_node(name, result) if removed[name]["removed"] else result


def _forget_storage_node(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """A destroyed st-*: out of site:storage_nodes (its master address stays pinned)."""
    result = _storage("forget_node")(name, __salt__["secrets.storage_nodes"], result)  # noqa: F821
    if result.get("retcode"):
        __context__["retcode"] = 1  # noqa: F821
    return result


def _forget_gone(name: str) -> dict[str, Any]:
    """A droplet that is gone already: its key and secrets must not outlive it (a copy of its
    disk would still reach the queue and storage with them)."""
    deleted = _minions("delete_key")(__opts__, name)
    forgotten = bool(__salt__["secrets.forget"](minion=name).get("changed"))  # noqa: F821
    done = [what for what, did in (("minion key", deleted), ("secrets", forgotten)) if did]
    comment = f"no droplet {name}" + (f"; its {' and '.join(done)} deleted" if done else "")
    result = {"result": True, "comment": comment, "removed": {}, "key_deleted": deleted}
    return _revoked(result, forgotten)


def list_():
    """
    The project's droplets from the DigitalOcean API, each with its address, size, tags,
    whether its minion answers (``no key`` when the master has none), and for a downloader
    or harvester what it is doing (``ccmirror.status``). Minions with no droplet (the
    static core, or a droplet gone from the API) are listed apart.

    CLI Example::

        salt-run fleet.list
    """
    try:
        conf = _cloud("settings")(__opts__)
    except ValueError as error:  # fleet_droplets' FleetValueError, or a FleetError
        return _refused(error)
    droplets = _cloud("droplets")(_cloud("manager")(conf), conf["project_tag"])
    keys = _minion_keys(accepted_only=True)
    number = _cloud("name_number")
    names = sorted((d.name for d in droplets if d.name in keys), key=number)
    answers = _ping(names) if names else {}
    workers = [n for n in names if answers.get(n) and n.startswith(("dl-", "hv-"))]
    work = _cmd(workers, "ccmirror.status", timeout=60) if workers else {}
    return {
        "droplets": _cloud("listing")(droplets, keys, answers, work),
        "minions_without_droplet": sorted(keys - {d.name for d in droplets}),
    }


# ---------------------------------------------------------------------------------------
# Steps that talk to the API and the minions.


def _create(
    conf: dict,
    names: list[str],
    role: str,
    extra_tags: list[str],
    size: str | None,
    region: str | None,
    image: str | None,
) -> tuple[list[Any], dict[str, dict], dict[str, str]]:
    """Each droplet with the fleet's SSH key and a user_data with no secret; its key pair made
    and accepted here (returned by name, for the handover). A refused create deletes the key
    made for it and stops there (the next run picks the same name again)."""
    master_pub = Path(__opts__["pki_dir"]) / "master.pub"
    # Pinned in the minion's config: it talks to no other master, even before its keys come.
    finger = salt.utils.crypt.pem_finger(
        str(master_pub), sum_type=__opts__.get("hash_type", "sha256")
    )
    made, fresh, errors = [], {}, {}
    for name in names:
        keys = _wheel("key.gen_accept")(name, force=True)
        config = _cloud("minion_config")(
            name, conf["master_address"], __opts__, conf["minion_config"]
        )
        script = _join("user_data")(
            name, {**config, "master_finger": finger}, conf["salt_venv"], conf["salt_requirement"]
        )
        project = conf["project_tag"]
        tags = [*_cloud("role_tags")(project, role), _storage("made_tag")(project), *extra_tags]
        try:
            droplet = _cloud("create")(conf, name, tags, script, size, region, image)
        except digitalocean.Error as error:
            _wheel("key.delete")(name)
            errors[name] = f"not created: {error}"
            _progress(f"{name}: not created: {error}")
            break
        _progress(f"{name}: created (droplet {droplet.id}); its minion key is accepted")
        made.append(droplet)
        fresh[name] = keys
    return made, fresh, errors


def _hand_over(
    conf: dict, droplets: list[Any], fresh: dict[str, dict], seconds: float, errors: dict
) -> None:
    """fleet_join.hand_over_all with the master's key, its minions' answers and new keys.
    Callbacks use no ``__utils__``: a util calling back has none (a LoaderError)."""
    master_public = (Path(__opts__["pki_dir"]) / "master.pub").read_text()
    ping, gen_accept, known_hosts = _minions("ping"), _wheel("key.gen_accept"), _join("known_hosts")
    cachedir = __opts__["cachedir"]
    _join("hand_over_all")(
        conf, droplets, fresh, master_public, seconds, errors, lambda ids: ping(__opts__, ids),
        lambda name: gen_accept(name, force=True), _address_of(),
        lambda droplet: known_hosts(cachedir, droplet.id), _reporter(),
    )  # fmt: skip


def _retire(droplet: Any, wait: float, force: bool) -> dict[str, Any]:
    """Drain, delete the key, destroy, forget. The key goes before the droplet: a minion
    with no key can do nothing, and a destroy that fails is simply run again."""
    name = droplet.name
    _progress(f"{name}: draining (up to {wait:g}s)")
    drained = _minions("drain")(__opts__, name, wait)
    if not drained["result"] and not force:
        return {"removed": False, "drain": drained["comment"], "comment": "left as it is"}
    deleted = _minions("delete_key")(__opts__, name)
    try:
        droplet.destroy()
    except digitalocean.NotFoundError:
        pass  # gone already: what a second run finds
    except digitalocean.Error as error:
        return {"removed": False, "drain": drained["comment"], "comment": f"destroy: {error}"}
    forgotten = __salt__["secrets.forget"](minion=name)  # noqa: F821
    _join("forget_host")(_join("known_hosts")(__opts__["cachedir"], droplet.id))
    _progress(f"{name}: destroyed")
    return {
        "removed": True,
        "drain": drained["comment"],
        "key_deleted": deleted,
        "secrets_forgotten": bool(forgotten.get("changed")),
    }


def _removal_result(removed: dict[str, dict], **names: Any) -> dict[str, Any]:
    ok = all(r["removed"] for r in removed.values())
    forgotten = any(r.get("secrets_forgotten") for r in removed.values())
    return _revoked({**names, "result": ok, "removed": removed}, forgotten)


def _revoked(result: dict[str, Any], forgotten: bool) -> dict[str, Any]:
    """`result` once what forgotten secrets opened is closed (`apply`: where; `revoked`: per
    server, "ok" or why not). A failed revoke, or anything failed before, fails the run."""
    result["apply"] = [f"{prefix}*" for prefix in REVOKE_STATES] if forgotten else []
    result["revoked"] = (
        _minions("revoke")(__opts__, REVOKE_STATES, REVOKE_TIMEOUT, _reporter())
        if forgotten
        else {}
    )
    removed = [
        result.get("key_deleted"),
        *(r.get("key_deleted") for r in result["removed"].values()),
    ]
    gone = forgotten or any(removed)
    result["scrape_targets"] = _scrape_targets([], {}) if gone else {}
    outcomes = [*result["revoked"].values(), *result["scrape_targets"].values()]
    if any(outcome != "ok" for outcome in outcomes):
        result["result"] = False
    if not result["result"]:
        __context__["retcode"] = result["retcode"] = 1  # noqa: F821
    return result


def _scrape_targets(published: list[str], errors: dict[str, str]) -> dict[str, str]:
    """Prometheus' targets rewritten for the fleet as it is now (the new minions' addresses
    published first); a scraper that fails it is named in `errors`."""
    refreshed = _minions("refresh_scrape_targets")(__opts__, published, _reporter())
    errors.update({m: f"scrape targets: {why}" for m, why in refreshed.items() if why != "ok"})
    return refreshed


# ---------------------------------------------------------------------------------------
# What the runner reaches in this checkout's _utils/ (the master's config has utils_dirs on
# it): fleet_droplets (settings, names, the DigitalOcean API), fleet_join (a droplet's join),
# fleet_minions (calls to minions and keys), private_pillar (the minion-id rule), runner_tools.


def _util(name: str) -> Any:
    """A `_utils/` function by "module.function"."""
    function = __utils__.get(name)  # noqa: F821 (Salt injects it)
    if function is None:
        module = name.split(".")[0]
        raise FleetError(f"{module} is not loaded: the master's config needs utils_dirs: [_utils]")
    return function


def _cloud(name: str) -> Any:
    return _util(f"fleet_droplets.{name}")


def _join(name: str) -> Any:
    return _util(f"fleet_join.{name}")


def _progress(message: str) -> None:
    """A progress event for salt-run's caller and a log line; silent outside a job."""
    _reporter()(message)


def _reporter() -> Callable[[str], None]:
    """_progress for a _utils/ function to call back (see runner_tools.reporter)."""
    return _util("runner_tools.reporter")(globals().get("__jid_event__"), log, "fleet")


def _storage(name: str) -> Any:
    return _util(f"fleet_storage.{name}")


def _address_of() -> Callable[[Any], str | None]:
    """A droplet's private address, as a callback a util may call (nothing left to resolve)."""
    private_ip = _cloud("private_ip")
    return lambda droplet: getattr(droplet, "private_ip_address", None) or private_ip(droplet)


def _minions(name: str) -> Any:
    return _util(f"fleet_minions.{name}")


def _cmd(targets: list[str], fun: str, timeout: int = 60, **kwargs: Any) -> dict:
    return _minions("cmd")(__opts__, targets, fun, timeout, **kwargs)


def _ping(targets: list[str]) -> dict[str, bool]:
    return _minions("ping")(__opts__, targets)


def _wheel(name: str) -> Any:
    """A wheel function called in this process (key.gen_accept returns a private key)."""
    return _minions("wheel")(__opts__, name)


def _minion_keys(accepted_only: bool = False) -> set[str]:
    return _minions("minion_keys")(__opts__, accepted_only)


def _refused(error: Exception, **names: Any) -> dict[str, Any]:
    """One clear error, nothing changed. salt-run exits with the return's `retcode`; the
    context's marks the job failed for orchestration."""
    __context__["retcode"] = 1  # noqa: F821
    log.error("fleet: %s", error)
    return {**names, "result": False, "error": str(error), "retcode": 1}
