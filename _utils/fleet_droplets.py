"""The fleet runner's plain layer: its settings, its droplets' names and tags, the
DigitalOcean API (python-digitalocean) and what `fleet.list` shows of a droplet. The fleet
runner reaches it as ``__utils__["fleet_droplets.*"]`` (the master's config has
``utils_dirs`` on this checkout's ``_utils/``). No minion, no ``__opts__``: the master's
options come in as an argument. A bad setting, role, count or tag raises FleetValueError (a
ValueError) before anything changes; the API's own errors are python-digitalocean's.

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
      storage_volume_gb: 1000            # each new st-N's volume (Terraform's default too)
      storage_volumes: true              # false: none (the lab: containers, no block device)
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import digitalocean
except ImportError:  # the fleet runner says so first
    digitalocean = None

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
    # GiB of the volume fleet.up role=storage gives each new st-N: terraform/variables.tf's
    # storage_volume_gb default, so a droplet added later holds as much as the core's.
    "storage_volume_gb": 1000,
    # False where droplets have no block device (the lab's are containers): no volume is
    # made, none recorded, and the storage root stays on the droplet's disk.
    "storage_volumes": True,
}
MAX_VOLUME_GB = 16384  # DigitalOcean's largest volume (16 TiB)
SSH_KEY_NAME = "ccmirror-fleet-ssh"
NAME = re.compile(r"^([a-z]+)-(\d+)$")
TAG = re.compile(r"^[A-Za-z0-9_:-]{1,255}$")


class FleetValueError(ValueError):
    """A setting, role, count or tag the fleet cannot use; the message says which and why."""


# ---------------------------------------------------------------------------------------
# Settings, arguments, names and tags.


def settings(opts: dict) -> dict[str, Any]:
    """The fleet's settings from the master's config, with defaults; the token read from
    `token` or `token_file`. FleetValueError names what is missing or wrong."""
    given = opts.get(SETTINGS_KEY) or {}
    if not isinstance(given, dict):
        raise FleetValueError(f"{SETTINGS_KEY} in the master's config must be a mapping")
    unknown = sorted(set(given) - set(DEFAULTS) - {"token", "token_file", "master_address"})
    if unknown:
        raise FleetValueError(f"unknown {SETTINGS_KEY} settings: {', '.join(unknown)}")
    merged = {**DEFAULTS, **given}
    token = given.get("token")
    if not token and given.get("token_file"):
        try:
            token = Path(given["token_file"]).read_text().strip()
        except OSError as error:
            raise FleetValueError(f"{SETTINGS_KEY}:token_file: {error.strerror}") from None
    if not token:
        raise FleetValueError(
            f"no DigitalOcean token: set {SETTINGS_KEY}:token or token_file in the master's"
            " config (never in a pillar)"
        )
    merged["token"] = str(token)
    merged["ssh_key_file"] = str(
        given.get("ssh_key_file") or Path(opts.get("pki_dir", "/etc/salt/pki/master"), SSH_KEY_NAME)
    )
    merged["master_address"] = given.get("master_address") or _listening_address(opts)
    if not merged["master_address"]:
        raise FleetValueError(
            f"no address for new minions to reach the master: set {SETTINGS_KEY}:master_address"
        )
    if not TAG.match(str(merged["project_tag"])):
        raise FleetValueError(f"project_tag {merged['project_tag']!r} is not a DigitalOcean tag")
    if not isinstance(merged["minion_config"], dict):
        raise FleetValueError(f"{SETTINGS_KEY}:minion_config must be a mapping")
    if not isinstance(merged["storage_volumes"], bool):
        raise FleetValueError(f"{SETTINGS_KEY}:storage_volumes must be true or false")
    size = merged["storage_volume_gb"]
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_VOLUME_GB:
        raise FleetValueError(
            f"{SETTINGS_KEY}:storage_volume_gb must be a whole number of GiB from 1 to"
            f" {MAX_VOLUME_GB} (16 TiB, DigitalOcean's largest volume); not {size!r}"
        )
    return merged


def _listening_address(opts: dict) -> str | None:
    """The master's `interface` when it is one address (not 0.0.0.0 / ::)."""
    interface = opts.get("interface")
    return None if interface in (None, "", "0.0.0.0", "::") else str(interface)


def check_tags(tags: object) -> list[str]:
    if tags is None:
        return []
    listed = [tags] if isinstance(tags, str) else tags
    if not isinstance(listed, list) or not all(isinstance(t, str) and TAG.match(t) for t in listed):
        raise FleetValueError(
            f"tags must be a list of DigitalOcean tags (letters, digits, _:-); not {tags!r}"
        )
    return listed


def check_role(role: object, roles: dict[str, str]) -> str:
    """One of `roles` (the runner's, by name: their minion id prefixes)."""
    if role not in roles:
        raise FleetValueError(f"role must be one of {', '.join(sorted(roles))}; not {role!r}")
    return str(role)


def check_count(count: object, least: int = 0, what: str = "count") -> int:
    """A whole number of droplets, at least `least` (Salt passes `count=3` as an int, but a
    quoted or YAML-odd value is refused rather than guessed at)."""
    if isinstance(count, bool) or not isinstance(count, (int, str)):
        raise FleetValueError(f"{what} must be a whole number; not {count!r}")
    try:
        number = int(count)
    except ValueError:
        raise FleetValueError(f"{what} must be a whole number; not {count!r}") from None
    if number < least or number > 100:
        raise FleetValueError(f"{what} must be from {least} to 100; not {number}")
    return number


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


def listing(
    found: list[Any], keys: set[str], answers: dict[str, bool], work: dict[str, Any]
) -> dict[str, dict]:
    """fleet.list's droplets by name, in number order: each one's summary, whether its
    minion answers (``no key`` when the master has none) and a worker's work."""
    listed = {}
    for droplet in sorted(found, key=lambda d: name_number(d.name)):
        entry = summary(droplet)
        if droplet.name not in keys:
            entry["minion"] = "no key"
        else:
            entry["minion"] = "up" if answers.get(droplet.name) else "down"
        if droplet.name in work:
            entry["work"] = describe_work(work[droplet.name])
        listed[droplet.name] = entry
    return listed


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


# ---------------------------------------------------------------------------------------
# The DigitalOcean API.


def manager(conf: dict) -> Any:
    # python-digitalocean reads the end point from the environment in objects it makes
    # itself (Droplet.create_multiple, a listed droplet's actions): set it for this process.
    os.environ["DIGITALOCEAN_END_POINT"] = conf["end_point"]
    os.environ.setdefault("PYTHON_DIGITALOCEAN_REQUEST_TIMEOUT_SEC", str(conf["api_timeout"]))
    return digitalocean.Manager(token=conf["token"], end_point=conf["end_point"])


def droplets(api: Any, tag: str | None) -> list[Any]:
    """The droplets with `tag`, or all of them (`api`: a manager())."""
    return api.get_all_droplets(tag_name=tag) if tag else api.get_all_droplets()


def create(
    conf: dict,
    name: str,
    tags: list[str],
    user_data: str,
    size: str | None = None,
    region: str | None = None,
    image: str | None = None,
) -> Any:
    """A new droplet in the fleet's VPC with the fleet's SSH key (`conf["ssh_key_id"]`) and
    `user_data`; `size`, `region`, `image` over the settings'. Raises digitalocean.Error
    when the API refuses it."""
    droplet = digitalocean.Droplet(
        token=conf["token"],
        end_point=conf["end_point"],
        name=name,
        region=region or conf["region"],
        size_slug=size or conf["size"],
        image=image or conf["image"],
        vpc_uuid=conf["vpc_uuid"],
        tags=tags,
        ssh_keys=[conf["ssh_key_id"]],
        user_data=user_data,
    )
    droplet.create()
    return droplet


def tag_droplets(conf: dict, name: str, tagged: list[Any]) -> None:
    tag = digitalocean.Tag(token=conf["token"], end_point=conf["end_point"], name=name)
    tag.create()  # DigitalOcean answers an existing tag as made
    tag.add_droplets([str(d.id) for d in tagged])


def wait_active(
    made: list[Any], seconds: float, progress: Callable[[str], None]
) -> tuple[list[Any], list[Any]]:
    """(active, still waiting) after at most `seconds`: each droplet's state read again every
    second, and a progress line for each that becomes active."""
    deadline = time.monotonic() + seconds
    waiting = list(made)
    active: list[Any] = []
    while waiting and time.monotonic() < deadline:
        for droplet in list(waiting):
            droplet.load()
            if droplet.status == "active":
                waiting.remove(droplet)
                active.append(droplet)
                progress(f"{droplet.name}: active at {droplet.private_ip_address}")
        if waiting:
            time.sleep(1)
    return active, waiting


def summary(droplet: Any) -> dict[str, Any]:
    """A droplet as the fleet runner returns it."""
    return {
        "name": droplet.name,
        "id": droplet.id,
        "status": droplet.status,
        "private_ip": getattr(droplet, "private_ip_address", None) or private_ip(droplet),
        "region": (droplet.region or {}).get("slug")
        if isinstance(droplet.region, dict)
        else droplet.region,
        "size": droplet.size_slug,
        "tags": list(droplet.tags or []),
    }


def private_ip(droplet: Any) -> str | None:
    for net in (getattr(droplet, "networks", None) or {}).get("v4", []):
        if net.get("type") == "private":
            return net.get("ip_address")
    return None
