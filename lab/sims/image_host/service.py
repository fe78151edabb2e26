"""The lab's image host (lab/sims/image_host/server.py) as a host service on the bridge address: the
Flickr simulator's image URLs point at it, so downloader droplets fetch from it as they
would from Flickr's image servers; its `/_img/` endpoints set faults per photo."""

from __future__ import annotations

import requests

from ccmirror_common.hosts import DEFAULT_ALLOW_HOSTS
from lab.fleet import host_services
from lab.fleet.core import LabConfig, LabState

SERVICE = "image-host"
PORT = 8601
IMAGE_SIZE = 8192  # bytes per JPEG: enough for the byte counts to mean something


def base_url(config: LabConfig) -> str:
    return f"http://{config.host_address}:{PORT}"


def allow_hosts(config: LabConfig) -> list[str]:
    """The site's `fetch.allow_hosts`: Flickr's hosts and this image host's bridge address,
    which a fetcher refuses (a private address) unless the list names it."""
    return [*DEFAULT_ALLOW_HOSTS, config.host_address]


def ensure(config: LabConfig, state: LabState, image_size: int = IMAGE_SIZE) -> None:
    args = ["lab.sims.image_host.server", "--host", config.host_address, "--port", str(PORT)]
    host_services.ensure(config, state, SERVICE, [*args, "--image-size", str(image_size)], PORT)


def set_faults(config: LabConfig, faults: dict[int, str | dict]) -> None:
    """Per photo id a mode (or {"mode", "times"}), see lab/sims/image_host/server.py."""
    payload = {"faults": {str(photo_id): mode for photo_id, mode in faults.items()}}
    url = base_url(config) + "/_img/faults"
    requests.post(url, json=payload, timeout=10).raise_for_status()


def stats(config: LabConfig) -> dict:
    response = requests.get(base_url(config) + "/_img/stats", timeout=10)
    response.raise_for_status()
    return response.json()


def set_latency(config: LabConfig, seconds: float) -> None:
    """Every image answered `seconds` late from now on (0: at once again)."""
    url = base_url(config) + "/_img/latency"
    requests.post(url, json={"seconds": seconds}, timeout=10).raise_for_status()
