"""The lab's Flickr API: the simulator as a host service on the bridge address, accepting the
harvester droplets' own throw-away keys (from their private pillar files) and the keys the
mission issued before its harvesters exist (`configure`), so `harvester work` on an hv-*
droplet runs against it as it would against Flickr. The universe it simulates (seed, hot
spots, where its image URLs point) is the lab's setting, kept in `<lab root>/flickr-sim.json`
so every restart serves the same photos."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import yaml

from lab.fleet import host_services
from lab.fleet.core import LabConfig, LabState

SERVICE = "flickr-sim"
PORT = 8600
SETTINGS_FILE = "flickr-sim.json"
# Consumer secrets and access tokens of keys issued to sign (0600; lab/sims/flickr/oauth.py).
CREDENTIALS_FILE = "flickr-sim-credentials.json"


def api_url(config: LabConfig) -> str:
    return f"http://{config.host_address}:{PORT}/services/rest/"


def harvester_keys(private_pillar: Path) -> list[str]:
    """Every hv-* minion's Flickr key, as its own pillar file gives it (none before the
    private pillar root is written)."""
    keys = []
    for path in sorted(private_pillar.glob("minions/hv-*.sls")):
        own = yaml.safe_load(path.read_text()) or {}
        key = own.get("harvester", {}).get("flickr", {}).get("api_key")
        if key:
            keys.append(key)
    return keys


def settings(config: LabConfig) -> dict:
    """{"options": [simulator options], "issued_keys": [...]}; empty when never set."""
    path = config.root / SETTINGS_FILE
    return json.loads(path.read_text()) if path.exists() else {"options": [], "issued_keys": []}


def configure(
    config: LabConfig, options: list[str], issued_keys: list[str], issued: list[dict] | None = None
) -> None:
    """The universe's options and the keys issued so far (0600: they are the lab's keys).
    `issued`: the keys as issued (`key`, `secret`, and `oauth_token`, `oauth_token_secret`
    for a key that signs); the simulator checks the signatures of those with a token."""
    path = config.root / SETTINGS_FILE
    path.touch(mode=0o600)
    path.write_text(json.dumps({"options": options, "issued_keys": sorted(issued_keys)}))
    signing = [pair for pair in issued or [] if pair.get("oauth_token")]
    credentials = config.root / CREDENTIALS_FILE
    credentials.unlink(missing_ok=True)
    if signing:
        credentials.touch(mode=0o600)
        credentials.write_text(json.dumps(sim_credentials(signing)))


def new_key(signed: bool = False) -> dict[str, str]:
    """A throw-away key and secret, as Flickr issues them (32 and 16 hex digits), and, for a
    key that signs its calls, an access token as `harvester flickr-auth` gets one (its token
    and token secret: the file `secrets.set_flickr_key from_file=` takes then has all four)."""
    key = {"key": secrets.token_hex(16), "secret": secrets.token_hex(8)}
    if signed:
        key["oauth_token"] = f"{secrets.randbelow(10**17):017d}-{secrets.token_hex(8)}"
        key["oauth_token_secret"] = secrets.token_hex(8)
    return key


def sim_credentials(issued: list[dict]) -> dict:
    """The simulator's credentials file: each key's secret, each token's key and secret."""
    return {
        "keys": {pair["key"]: pair["secret"] for pair in issued},
        "tokens": {
            pair["oauth_token"]: {"key": pair["key"], "secret": pair["oauth_token_secret"]}
            for pair in issued
        },
    }


def restart(config: LabConfig, state: LabState, private_pillar: Path) -> None:
    """(Re)start the simulator with the keys known now, recorded in the state for `down`;
    one already running with these keys and options is left be; none runs with no key."""
    wanted = settings(config)
    keys = sorted(set(harvester_keys(private_pillar)) | set(wanted["issued_keys"]))
    if not keys:
        host_services.stop(config, state, SERVICE)
        return
    args = ["lab.sims.flickr.server", "--host", config.host_address, "--port", str(PORT)]
    # Throw-away lab keys; the simulator takes them no other way.
    args += ["--keys", ",".join(keys), *wanted["options"]]
    if (config.root / CREDENTIALS_FILE).exists():
        args += ["--credentials", str(config.root / CREDENTIALS_FILE)]
    host_services.ensure(config, state, SERVICE, args, PORT)


def stop(config: LabConfig, state: LabState) -> None:
    host_services.stop(config, state, SERVICE)
