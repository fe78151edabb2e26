"""The fleet's droplets on DigitalOcean, from the master: make, list, drain and destroy them.

``fleet.up`` makes worker droplets (downloaders, harvesters) with a key pair made on the
master and accepted there before the droplet exists (never ``auto_accept``). Their
``user_data`` holds no secret (``_utils/fleet_join.py``): the key pair goes over SSH once,
as salt-cloud's deploy step does, with the fleet's SSH key (on the master only; registered
with DigitalOcean, which installs it for root). Then it waits for the minions to answer,
gives them their secrets (``secrets.init``), syncs modules, refreshes pillar and applies
highstate. ``fleet.down`` / ``fleet.destroy`` drain a droplet's daemon before it goes, then
delete its minion key, destroy it, forget its secrets and apply at once, on ``db-*`` and
``st-*``, the states that render the queue's tokens and storage's authorized keys (its token
and storage key are refused from then on). ``fleet.list`` joins the droplets the API lists
with their minions' answers and each downloader's work.

Settings come from the master's own config (never from a minion's pillar), e.g. a file in
``/etc/salt/master.d/`` readable by root only::

    ccmirror_fleet:
      token: dop_v1_...                  # or token_file: /etc/salt/do-token (0600)
      end_point: https://api.digitalocean.com/v2/   # the API (the lab: its simulator)
      master_address: 10.0.0.2           # what new minions connect to
      region: nyc3
      size: s-1vcpu-1gb
      image: debian-12-x64
      vpc_uuid: ...                      # default: the region's default VPC
      project_tag: ccmirror              # droplets are tagged ccmirror, ccmirror-<role>
      salt_venv: /opt/ccmirror-salt      # where the minion's Salt is (installed if absent)
      minion_config: {}                  # more minion settings (the lab: systemd.scope)
      ssh_key_file: /etc/salt/pki/master/ccmirror-fleet-ssh   # the default; made if absent

``count`` of ``fleet.up`` is the number of droplets of the role wanted in all, so running it
twice makes nothing the second time; ``fleet.down`` takes ``count`` droplets away.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import salt.client
import salt.loader
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

# Roles fleet.up makes, by minion id prefix as in salt/top.sls. The database and storage
# droplets are the static core (terraform/), never scaled from here.
ROLE_PREFIXES = {"downloader": "dl", "harvester": "hv"}
SETTINGS_KEY = "ccmirror_fleet"
DEFAULTS: dict[str, Any] = {
    "end_point": "https://api.digitalocean.com/v2/",
    "region": "nyc3",
    "size": "s-1vcpu-1gb",
    "image": "debian-12-x64",
    "vpc_uuid": None,
    "project_tag": "ccmirror",
    "salt_venv": "/opt/ccmirror-salt",
    "salt_requirement": "salt>=3006,<3009",
    "minion_config": {},
    "api_timeout": 30,
    "ssh_key_file": None,  # <pki_dir>/ccmirror-fleet-ssh
}
SSH_KEY_NAME = "ccmirror-fleet-ssh"
# What renders a worker's access on the servers it reaches: applied on its own (state.sls_id,
# not a highstate) when a worker's secrets are forgotten, so they are refused at once.
REVOKE_STATES = {
    "db-": ("queue-tokens-file-managed", "queue.config"),  # the queue's bearer tokens
    "st-": ("storage-authorized-keys-file-managed", "storage.config"),  # storage's sshd
}
REVOKE_TIMEOUT = 300
ACTIVE_SECONDS = 300
JOIN_SECONDS = 300
PING_TIMEOUT = 5
HIGHSTATE_TIMEOUT = 1800
DRAIN_WAIT = 300
NAME = re.compile(r"^([a-z]+)-(\d+)$")
TAG = re.compile(r"^[A-Za-z0-9_:-]{1,255}$")


class FleetError(ValueError):
    """A role, count, name or setting that cannot be used; raised before anything changes."""


def __virtual__():
    if not HAS_DIGITALOCEAN:
        return False, "the fleet runner needs python-digitalocean in the master's Python"
    return __virtualname__


# ---------------------------------------------------------------------------------------
# Pure parts: no __opts__, no API, no minion (tests/salt/test_fleet_runner_unit.py).


def check_role(role: object) -> str:
    if role not in ROLE_PREFIXES:
        raise FleetError(f"role must be one of {', '.join(sorted(ROLE_PREFIXES))}; not {role!r}")
    return str(role)


def check_name(name: object) -> str:
    """A droplet name by the fleet's one rule for minion ids, check_minion_id in
    _runners/secrets.py (which pillar/top.sls and the lab follow too)."""
    try:
        return _secrets_layer().check_minion_id(name)
    except ValueError as error:  # secrets' SecretsError
        raise FleetError(str(error)) from None


def _secrets_layer():
    """_runners/secrets.py's plain layer, loaded by path (Salt's loader keeps runner
    modules to itself; deploy.py loads wheelhouse.py the same way)."""
    spec = importlib.util.spec_from_file_location(
        "ccmirror_secrets", Path(__file__).with_name("secrets.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_count(count: object, least: int = 0, what: str = "count") -> int:
    """A whole number of droplets, at least `least` (Salt passes `count=3` as an int, but a
    quoted or YAML-odd value is refused rather than guessed at)."""
    if isinstance(count, bool) or not isinstance(count, (int, str)):
        raise FleetError(f"{what} must be a whole number; not {count!r}")
    try:
        number = int(count)
    except ValueError:
        raise FleetError(f"{what} must be a whole number; not {count!r}") from None
    if number < least or number > 100:
        raise FleetError(f"{what} must be from {least} to 100; not {number}")
    return number


def settings(opts: dict) -> dict[str, Any]:
    """The fleet's settings from the master's config, with defaults; the token read from
    `token` or `token_file`. FleetError names what is missing or wrong."""
    given = opts.get(SETTINGS_KEY) or {}
    if not isinstance(given, dict):
        raise FleetError(f"{SETTINGS_KEY} in the master's config must be a mapping")
    unknown = sorted(set(given) - set(DEFAULTS) - {"token", "token_file", "master_address"})
    if unknown:
        raise FleetError(f"unknown {SETTINGS_KEY} settings: {', '.join(unknown)}")
    merged = {**DEFAULTS, **given}
    token = given.get("token")
    if not token and given.get("token_file"):
        try:
            token = Path(given["token_file"]).read_text().strip()
        except OSError as error:
            raise FleetError(f"{SETTINGS_KEY}:token_file: {error.strerror}") from None
    if not token:
        raise FleetError(
            f"no DigitalOcean token: set {SETTINGS_KEY}:token or token_file in the master's"
            " config (never in a pillar)"
        )
    merged["token"] = str(token)
    merged["ssh_key_file"] = str(
        given.get("ssh_key_file") or Path(opts.get("pki_dir", "/etc/salt/pki/master"), SSH_KEY_NAME)
    )
    merged["master_address"] = given.get("master_address") or _listening_address(opts)
    if not merged["master_address"]:
        raise FleetError(
            f"no address for new minions to reach the master: set {SETTINGS_KEY}:master_address"
        )
    if not TAG.match(str(merged["project_tag"])):
        raise FleetError(f"project_tag {merged['project_tag']!r} is not a DigitalOcean tag")
    if not isinstance(merged["minion_config"], dict):
        raise FleetError(f"{SETTINGS_KEY}:minion_config must be a mapping")
    return merged


def _listening_address(opts: dict) -> str | None:
    """The master's `interface` when it is one address (not 0.0.0.0 / ::)."""
    interface = opts.get("interface")
    return None if interface in (None, "", "0.0.0.0", "::") else str(interface)


def role_tags(project_tag: str, role: str) -> list[str]:
    return [project_tag, f"{project_tag}-{role}"]


def ready_tag(project_tag: str) -> str:
    """On a droplet whose fleet.up steps all succeeded: a re-run leaves it alone."""
    return f"{project_tag}-ready"


def next_names(prefix: str, taken: set[str], how_many: int) -> list[str]:
    """The lowest free `<prefix>-N` (N from 1): no droplet and no minion key of that name,
    so a new droplet never takes an old minion's key or secrets."""
    names: list[str] = []
    number = 0
    while len(names) < how_many:
        number += 1
        name = f"{prefix}-{number}"
        if name not in taken:
            names.append(name)
    return names


def name_number(name: str) -> int:
    match = NAME.match(name)
    return int(match.group(2)) if match else -1


def last_ones(names: list[str], count: int) -> list[str]:
    """The `count` droplets fleet.down takes away: the highest numbers first, so the fleet
    keeps dl-1..dl-N."""
    return sorted(names, key=lambda n: (name_number(n), n), reverse=True)[:count]


# A minion notices a dead connection to the master within a minute (a probe after 30 s idle,
# three 10 s apart) and connects again. Salt's defaults (300 s idle, then the kernel's nine
# probes 75 s apart) left a droplet deaf for minutes after a short network outage: the
# master had dropped its side, the minion's still looked established.
MINION_KEEPALIVE = {"tcp_keepalive_idle": 30, "tcp_keepalive_intvl": 10, "tcp_keepalive_cnt": 3}


def minion_config(minion_id: str, master: str, opts: dict, extra: dict) -> dict[str, Any]:
    return {
        "id": minion_id,
        "master": master,
        "master_port": int(opts.get("ret_port", 4506)),
        "publish_port": int(opts.get("publish_port", 4505)),
        **MINION_KEEPALIVE,
        **extra,
    }


def describe_work(ret: object) -> str:
    """One line from `ccmirror.status`: what a minion's daemon is doing."""
    if not isinstance(ret, dict):
        return f"no answer: {ret}" if ret else "no answer"
    if not ret.get("installed"):
        return "ccmirror is not installed"
    work = ret.get("work")
    if not isinstance(work, dict):
        return str(work)
    if "error" in work:
        return f"error: {work['error']}"
    if ret.get("role") == "downloader":
        line = str(work.get("phase", "?"))
        lease = work.get("lease")
        if lease:
            line += f", lease {lease.get('lease_id')}: {lease.get('fetched', 0)} of"
            line += f" {lease.get('items')} fetched"
        return line
    if ret.get("role") == "harvester":
        tasks = work.get("tasks")
        if isinstance(tasks, list):
            return ", ".join(f"task {t['id']} page {t['page']}" for t in tasks) or "no task"
    return "ok"


class Steps:
    """How long each step took, in the order they ran (the runner's `steps` return)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._started = time.monotonic()

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self._started, 1)
        self._started = now


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
    Have ``count`` droplets of ``role`` (downloader or harvester) in all: make the missing
    ones (named dl-N / hv-N, the lowest free numbers; tagged ccmirror and ccmirror-<role>,
    plus ``tags``; in the VPC), each with its minion key made and accepted here first and a
    ``user_data`` that installs Salt if absent and starts the minion. Then, for the new
    droplets and any earlier one whose steps did not all succeed: wait until each minion
    answers (``timeout`` seconds), ``secrets.init`` (their secrets), sync modules, refresh
    pillar, apply highstate (``db-*`` and ``st-*`` first: they learn the new minions'
    token and key; ``highstate=False`` skips it). Safe to run twice: a second run makes
    nothing and finishes what the first left undone.

    Returns the droplets made, those kept, each step's seconds, and per minion what failed.

    CLI Example::

        salt-run fleet.up role=downloader count=4
        salt-run fleet.up role=harvester count=2 size=s-2vcpu-2gb region=ams3 tags='[batch7]'
        salt-run fleet.up role=downloader count=1 highstate=False
    """
    steps = Steps()
    try:
        role, count = check_role(role), check_count(count)
        conf = settings(__opts__)
        extra_tags = _check_tags(tags)
        highstate = _flag(highstate, "highstate")
        timeout = _seconds(timeout, "timeout")
        manager = _manager(conf)
        # The fleet's SSH key at DigitalOcean (made on the master and registered once).
        conf["ssh_key_id"] = _join("ssh_key_id")(conf, f"{conf['project_tag']}-fleet")
    except (FleetError, ValueError) as error:  # fleet_join's JoinError is a ValueError
        return _refused(error, role=role, count=count)
    project = conf["project_tag"]
    role_droplets = _droplets(manager, f"{project}-{role}")
    all_names = {d.name for d in _droplets(manager, None)} | _minion_keys()
    missing = max(0, count - len(role_droplets))
    names = next_names(ROLE_PREFIXES[role], all_names, missing)
    _progress(f"{role}: {len(role_droplets)} of {count} exist; making {', '.join(names) or 'none'}")
    made, fresh, errors = _create(manager, conf, names, role, extra_tags, size, region, image)
    steps.done("create")
    pending = [d for d in role_droplets if ready_tag(project) not in (d.tags or [])]
    targets = sorted({d.name for d in pending} | {d.name for d in made}, key=name_number)
    result: dict[str, Any] = {
        "role": role,
        "count": count,
        "made": [],
        "kept": sorted((d.name for d in role_droplets), key=name_number),
        "steps": steps.seconds,
        "errors": errors,
    }
    if made:
        active, not_active = _wait_active(made, ACTIVE_SECONDS)
        steps.done("active")
        result["made"] = [_droplet_summary(d) for d in active]
        errors.update({d.name: "not active in time" for d in not_active})
        targets = [t for t in targets if t not in {d.name for d in not_active}]
    if targets:
        joining = [d for d in [*pending, *made] if d.name in targets]
        _hand_over(conf, joining, fresh, timeout, errors)
        steps.done("handover")
        targets = [t for t in targets if t not in errors]
    if targets:
        _finish(targets, conf, role, highstate, timeout, steps, errors)
        ready = [
            d for d in [*pending, *made] if d.name in targets and d.name not in errors and highstate
        ]
        if ready:
            _tag(conf, ready_tag(project), ready)
    result["ready"] = [t for t in targets if t not in errors]
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
        role = check_role(role)
        if keep is None:
            count = check_count(1 if count is None else count, least=1)
        elif count is None:
            keep = check_count(keep, least=0, what="keep")
        else:
            raise FleetError("give count (droplets to take away) or keep (to leave), not both")
        conf = settings(__opts__)
        wait, force = _seconds(wait, "wait"), _flag(force, "force")
    except FleetError as error:
        return _refused(error, role=role, count=count, keep=keep)
    manager = _manager(conf)
    role_droplets = {d.name: d for d in _droplets(manager, f"{conf['project_tag']}-{role}")}
    # keep: counted against the droplets there are now (one destroyed from the console
    # meanwhile is not taken away twice).
    take = count if keep is None else max(len(role_droplets) - keep, 0)
    chosen = last_ones(list(role_droplets), take)
    _progress(f"{role}: taking away {', '.join(chosen) or 'none (there are none)'}")
    removed = {name: _retire(role_droplets[name], wait, force) for name in chosen}
    return _removal_result(removed, role=role, count=count, keep=keep)


def destroy(name: str, wait: int = DRAIN_WAIT, force=False):
    """
    Take one droplet away by name: drain (``wait`` seconds), delete its minion key, destroy
    it, forget its secrets (see ``fleet.down``). Only droplets tagged as the project's are
    destroyed. A name with no droplet left (destroyed from DigitalOcean's console, say) loses
    its minion key and its secrets: then apply ``db-*`` and ``st-*`` to revoke its queue token
    and storage key there. Safe to run twice.

    CLI Example::

        salt-run fleet.destroy name=dl-3
        salt-run fleet.destroy name=dl-3 force=True
    """
    try:
        if not isinstance(name, str) or not NAME.match(name):
            raise FleetError(f"name must be a droplet name such as dl-3; not {name!r}")
        check_name(name)  # NAME's `$` lets a final newline through
        conf = settings(__opts__)
        wait, force = _seconds(wait, "wait"), _flag(force, "force")
    except FleetError as error:
        return _refused(error, name=name)
    manager = _manager(conf)
    found = [d for d in _droplets(manager, conf["project_tag"]) if d.name == name]
    if not found:
        return _forget_gone(name)
    return _removal_result({name: _retire(found[0], wait, force)}, name=name)


def _forget_gone(name: str) -> dict[str, Any]:
    """A droplet that is gone already: its key and secrets must not outlive it (a copy of its
    disk would still reach the queue and storage with them)."""
    deleted = _delete_key(name)
    forgotten = bool(__salt__["secrets.forget"](minion=name).get("changed"))  # noqa: F821
    done = [what for what, did in (("minion key", deleted), ("secrets", forgotten)) if did]
    comment = f"no droplet {name}" + (f"; its {' and '.join(done)} deleted" if done else "")
    return _revoked({"result": True, "comment": comment, "removed": {}}, forgotten)


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
        conf = settings(__opts__)
    except FleetError as error:
        return _refused(error)
    droplets = _droplets(_manager(conf), conf["project_tag"])
    keys = _minion_keys(accepted_only=True)
    names = sorted((d.name for d in droplets if d.name in keys), key=name_number)
    answers = _ping(names) if names else {}
    workers = [n for n in names if answers.get(n) and n.startswith(("dl-", "hv-"))]
    work = _cmd(workers, "ccmirror.status", timeout=60) if workers else {}
    listed = {}
    for droplet in sorted(droplets, key=lambda d: name_number(d.name)):
        entry = _droplet_summary(droplet)
        if droplet.name not in keys:
            entry["minion"] = "no key"
        else:
            entry["minion"] = "up" if answers.get(droplet.name) else "down"
        if droplet.name in work:
            entry["work"] = describe_work(work[droplet.name])
        listed[droplet.name] = entry
    return {
        "droplets": listed,
        "minions_without_droplet": sorted(keys - {d.name for d in droplets}),
    }


# ---------------------------------------------------------------------------------------
# Steps that talk to the API and the minions.


def _progress(message: str) -> None:
    """A progress event for salt-run's caller; silent outside a job."""
    log.info("fleet: %s", message)
    event = globals().get("__jid_event__")
    if event is not None:
        event.fire_event({"message": message}, "progress")


def _manager(conf: dict) -> Any:
    # python-digitalocean reads the end point from the environment in objects it makes
    # itself (Droplet.create_multiple, a listed droplet's actions): set it for this process.
    os.environ["DIGITALOCEAN_END_POINT"] = conf["end_point"]
    os.environ.setdefault("PYTHON_DIGITALOCEAN_REQUEST_TIMEOUT_SEC", str(conf["api_timeout"]))
    return digitalocean.Manager(token=conf["token"], end_point=conf["end_point"])


def _droplets(manager: Any, tag: str | None) -> list[Any]:
    return manager.get_all_droplets(tag_name=tag) if tag else manager.get_all_droplets()


def _wheel(name: str) -> Any:
    """A wheel function called in this process (no event carries its return: key.gen_accept
    returns a private key)."""
    return salt.loader.wheels(__opts__)[name]


def _minion_keys(accepted_only: bool = False) -> set[str]:
    keys = _wheel("key.list_all")()
    kinds = (
        ("minions",)
        if accepted_only
        else ("minions", "minions_pre", "minions_rejected", "minions_denied")
    )
    return {minion for kind in kinds for minion in keys.get(kind, [])}


def _delete_key(name: str) -> bool:
    if name not in _minion_keys():
        return False
    _wheel("key.delete")(name)
    return True


def _create(
    manager: Any,
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
        config = minion_config(name, conf["master_address"], __opts__, conf["minion_config"])
        script = _join("user_data")(
            name, {**config, "master_finger": finger}, conf["salt_venv"], conf["salt_requirement"]
        )
        droplet = digitalocean.Droplet(
            token=conf["token"],
            end_point=conf["end_point"],
            name=name,
            region=region or conf["region"],
            size_slug=size or conf["size"],
            image=image or conf["image"],
            vpc_uuid=conf["vpc_uuid"],
            tags=[*role_tags(conf["project_tag"], role), *extra_tags],
            ssh_keys=[conf["ssh_key_id"]],
            user_data=script,
        )
        try:
            droplet.create()
        except digitalocean.Error as error:
            _wheel("key.delete")(name)
            errors[name] = f"not created: {error}"
            _progress(f"{name}: not created: {error}")
            break
        _progress(f"{name}: created (droplet {droplet.id}); its minion key is accepted")
        made.append(droplet)
        fresh[name] = keys
    return made, fresh, errors


def _join(name: str) -> Any:
    """A function of `_utils/fleet_join.py`: the master's config needs `utils_dirs` on it."""
    function = __utils__.get(f"fleet_join.{name}")  # noqa: F821 (Salt injects it)
    if function is None:
        raise FleetError("fleet_join is not loaded: the master's config needs utils_dirs: [_utils]")
    return function


def _known_hosts(droplet: Any) -> str:
    """One droplet's host key, trusted on first use: a file of its own, by droplet id."""
    return str(Path(__opts__["cachedir"], "ccmirror-fleet", "known_hosts", str(droplet.id)))


def _hand_over(
    conf: dict, droplets: list[Any], fresh: dict[str, dict], seconds: float, errors: dict
) -> None:
    """Each droplet's minion key pair over SSH. One from an earlier run whose minion does not
    answer gets a new pair (the old private half was never kept)."""
    master_public = (Path(__opts__["pki_dir"]) / "master.pub").read_text()
    for droplet in droplets:
        name, keys = droplet.name, fresh.get(droplet.name)
        if keys is None:
            if _ping([name]).get(name):
                continue
            keys = _wheel("key.gen_accept")(name, force=True)
        address = getattr(droplet, "private_ip_address", None) or _private_ip(droplet)
        script = _join("handover_script")(keys["priv"], keys["pub"], master_public, int(seconds))
        done = _join("hand_over")(
            address, conf["ssh_key_file"], _known_hosts(droplet), script, seconds
        )
        _progress(f"{name}: {done['comment']}")
        if not done["result"]:
            errors[name] = f"key handover: {done['comment']}"


def _wait_active(droplets: list[Any], seconds: float) -> tuple[list[Any], list[Any]]:
    deadline = time.monotonic() + seconds
    waiting = list(droplets)
    active: list[Any] = []
    while waiting and time.monotonic() < deadline:
        for droplet in list(waiting):
            droplet.load()
            if droplet.status == "active":
                waiting.remove(droplet)
                active.append(droplet)
                _progress(f"{droplet.name}: active at {droplet.private_ip_address}")
        if waiting:
            time.sleep(1)
    return active, waiting


def _finish(
    targets: list[str],
    conf: dict,
    role: str,
    highstate: bool,
    timeout: float,
    steps: Steps,
    errors: dict[str, str],
) -> None:
    """The steps after the droplets exist; a minion failing one is left out of the next
    and named in `errors`."""
    _progress(f"waiting up to {timeout:g}s for {', '.join(targets)} to answer")
    answered = _wait_minions(targets, timeout)
    errors.update({t: "minion did not answer in time" for t in targets if t not in answered})
    steps.done("minions")
    targets = [t for t in targets if t in answered]
    if not targets:
        return
    _progress("secrets.init: the new minions' secrets")
    secrets = __salt__["secrets.init"]()  # noqa: F821 (Salt injects it: the runners)
    steps.done("secrets")
    if secrets.get("error"):
        errors.update({t: f"secrets.init: {secrets['error']}" for t in targets})
        return
    _progress("syncing modules and refreshing pillar")
    synced = _cmd(targets, "saltutil.sync_all", timeout=120)
    refreshed = _cmd(targets, "saltutil.refresh_pillar", kwarg={"wait": True}, timeout=120)
    for target in targets:
        if not isinstance(synced.get(target), dict) or refreshed.get(target) is not True:
            errors[target] = "sync or pillar refresh failed"
    steps.done("sync")
    targets = [t for t in targets if t not in errors]
    if not (highstate and targets):
        return
    servers = "db-* or st-*" if role == "downloader" else "db-*"
    _progress(f"highstate on {servers}: they learn the new minions' secrets")
    with _client() as client:
        core = client.cmd(
            servers, "state.highstate", tgt_type="compound", timeout=HIGHSTATE_TIMEOUT
        )
    core_failed = {m: why for m, ret in core.items() if (why := _highstate_failure(ret))}
    steps.done("highstate_core")
    if core_failed:
        errors.update({t: f"highstate of {', '.join(sorted(core_failed))} failed" for t in targets})
        errors.update({m: f"highstate: {why}" for m, why in core_failed.items()})
        return
    _progress(f"highstate on {', '.join(targets)}")
    applied = _cmd(targets, "state.highstate", timeout=HIGHSTATE_TIMEOUT)
    for target in targets:
        why = _highstate_failure(applied.get(target))
        if why:
            errors[target] = f"highstate: {why}"
    steps.done("highstate")


def _highstate_failure(ret: object) -> str | None:
    if isinstance(ret, list):
        return "; ".join(str(line) for line in ret)[:500] or "render error"
    if not isinstance(ret, dict) or not ret:
        return f"no return: {ret}"[:500]
    failed = [
        str(chunk.get("__id__", key))
        for key, chunk in ret.items()
        if isinstance(chunk, dict) and chunk.get("result") is False
    ]
    return f"failed states: {', '.join(failed)}" if failed else None


def _wait_minions(targets: list[str], seconds: float) -> set[str]:
    deadline = time.monotonic() + seconds
    answered: set[str] = set()
    while time.monotonic() < deadline:
        answered |= {m for m, ok in _ping([t for t in targets if t not in answered]).items() if ok}
        if answered >= set(targets):
            break
        time.sleep(1)
    return answered


def _client():
    return salt.client.get_local_client(__opts__["conf_file"])


def _cmd(targets: list[str], fun: str, timeout: int = 60, **kwargs: Any) -> dict:
    with _client() as client:
        return client.cmd(targets, fun, tgt_type="list", timeout=timeout, **kwargs)


def _ping(targets: list[str]) -> dict[str, bool]:
    answers = _cmd(targets, "test.ping", timeout=PING_TIMEOUT)
    return {t: answers.get(t) is True for t in targets}


def _tag(conf: dict, name: str, droplets: list[Any]) -> None:
    tag = digitalocean.Tag(token=conf["token"], end_point=conf["end_point"], name=name)
    tag.create()  # DigitalOcean answers an existing tag as made
    tag.add_droplets([str(d.id) for d in droplets])


def _retire(droplet: Any, wait: float, force: bool) -> dict[str, Any]:
    """Drain, delete the key, destroy, forget. The key goes before the droplet: a minion
    with no key can do nothing, and a destroy that fails is simply run again."""
    name = droplet.name
    _progress(f"{name}: draining (up to {wait:g}s)")
    drained = _drain(name, wait)
    if not drained["result"] and not force:
        return {"removed": False, "drain": drained["comment"], "comment": "left as it is"}
    deleted = _delete_key(name)
    try:
        droplet.destroy()
    except digitalocean.NotFoundError:
        pass  # gone already: what a second run finds
    except digitalocean.Error as error:
        return {"removed": False, "drain": drained["comment"], "comment": f"destroy: {error}"}
    forgotten = __salt__["secrets.forget"](minion=name)  # noqa: F821
    _join("forget_host")(_known_hosts(droplet))
    _progress(f"{name}: destroyed")
    return {
        "removed": True,
        "drain": drained["comment"],
        "key_deleted": deleted,
        "secrets_forgotten": bool(forgotten.get("changed")),
    }


def _drain(name: str, wait: float) -> dict[str, Any]:
    """ccmirror.drain on a minion that has ccmirror; one that has none has nothing to drain."""
    if not _ping([name]).get(name):
        return {"result": False, "comment": "minion does not answer: not drained"}
    _cmd([name], "saltutil.sync_modules", timeout=60)
    status = _cmd([name], "ccmirror.status", timeout=60).get(name)
    if not isinstance(status, dict):
        return {"result": False, "comment": f"ccmirror.status: {status}"}
    if not status.get("installed"):
        return {"result": True, "comment": "ccmirror is not installed: nothing to drain"}
    ret = _cmd([name], "ccmirror.drain", timeout=int(wait) + 90, kwarg={"wait": wait}).get(name)
    if not isinstance(ret, dict):
        return {"result": False, "comment": f"ccmirror.drain: no answer: {ret}"}
    return {"result": bool(ret.get("result")), "comment": str(ret.get("comment", ""))}


def _removal_result(removed: dict[str, dict], **names: Any) -> dict[str, Any]:
    ok = all(r["removed"] for r in removed.values())
    forgotten = any(r.get("secrets_forgotten") for r in removed.values())
    return _revoked({**names, "result": ok, "removed": removed}, forgotten)


def _revoked(result: dict[str, Any], forgotten: bool) -> dict[str, Any]:
    """`result` once what forgotten secrets opened is closed (`apply`: where; `revoked`: per
    server, "ok" or why not). A failed revoke, or anything failed before, fails the run."""
    result["apply"] = [f"{prefix}*" for prefix in REVOKE_STATES] if forgotten else []
    result["revoked"] = _revoke() if forgotten else {}
    if any(outcome != "ok" for outcome in result["revoked"].values()):
        result["result"] = False
    if not result["result"]:
        __context__["retcode"] = result["retcode"] = 1  # noqa: F821
    return result


def _revoke() -> dict[str, str]:
    """REVOKE_STATES applied on every accepted db-* and st-* minion (one that does not answer
    is a failure: it may still let the token in)."""
    servers = sorted(_minion_keys(accepted_only=True))
    revoked = {}
    for prefix, (state_id, sls) in REVOKE_STATES.items():
        targets = [minion for minion in servers if minion.startswith(prefix)]
        if not targets:
            continue
        _progress(f"revoking at once on {', '.join(targets)}: {state_id}")
        ret = _cmd(targets, "state.sls_id", REVOKE_TIMEOUT, arg=[state_id], kwarg={"mods": sls})
        for target in targets:
            why = _highstate_failure(ret.get(target))
            revoked[target] = f"{state_id}: {why}" if why else "ok"
    return revoked


def _droplet_summary(droplet: Any) -> dict[str, Any]:
    return {
        "name": droplet.name,
        "id": droplet.id,
        "status": droplet.status,
        "private_ip": getattr(droplet, "private_ip_address", None) or _private_ip(droplet),
        "region": (droplet.region or {}).get("slug")
        if isinstance(droplet.region, dict)
        else droplet.region,
        "size": droplet.size_slug,
        "tags": list(droplet.tags or []),
    }


def _private_ip(droplet: Any) -> str | None:
    for net in (getattr(droplet, "networks", None) or {}).get("v4", []):
        if net.get("type") == "private":
            return net.get("ip_address")
    return None


def _check_tags(tags: object) -> list[str]:
    if tags is None:
        return []
    listed = [tags] if isinstance(tags, str) else tags
    if not isinstance(listed, list) or not all(isinstance(t, str) and TAG.match(t) for t in listed):
        raise FleetError(
            f"tags must be a list of DigitalOcean tags (letters, digits, _:-); not {tags!r}"
        )
    return listed


def _flag(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    raise FleetError(f"{name} must be True or False; not {value!r}")


def _seconds(value: object, name: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise FleetError(f"{name} must be a number of seconds; not {value!r}") from None
    if not 0 <= seconds <= 86400:
        raise FleetError(f"{name} must be from 0 to 86400 seconds; not {value!r}")
    return seconds


def _refused(error: Exception, **names: Any) -> dict[str, Any]:
    """One clear error, nothing changed. salt-run exits with the return's `retcode`; the
    context's marks the job failed for orchestration."""
    __context__["retcode"] = 1  # noqa: F821
    log.error("fleet: %s", error)
    return {**names, "result": False, "error": str(error), "retcode": 1}
