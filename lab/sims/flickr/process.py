"""Run the Flickr simulator as a child process and talk to its `/_sim/` endpoints.

Tests, benchmarks and the lab start the simulator the same way: a real server on an
ephemeral loopback port, whose first stdout line gives its URL.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import requests

from lab import CHECKOUT
from lab.processes import child

READY = "flickr_sim listening on "


@dataclass
class RunningSim:
    process: subprocess.Popen
    api_url: str  # http://127.0.0.1:PORT/services/rest/
    key: str

    @property
    def base_url(self) -> str:
        return self.api_url.split("/services/", 1)[0]

    def get(self, path: str, **params: object) -> dict:
        response = requests.get(self.base_url + path, params=params, timeout=300)
        response.raise_for_status()
        return response.json()

    def control(self, **settings: object) -> dict:
        response = requests.post(self.base_url + "/_sim/control", json=settings, timeout=10)
        response.raise_for_status()
        return response.json()

    def change_photos(self, changes: dict[int, str | int]) -> requests.Response:
        """Delete photos, make them private or public, relabel them (`/_sim/photos`)."""
        body = {str(photo_id): what for photo_id, what in changes.items()}
        return requests.post(self.base_url + "/_sim/photos", json=body, timeout=10)

    def truth(self, min_upload: int, max_upload: int) -> set[int]:
        """The CC photo ids uploaded in [min_upload, max_upload] (inclusive)."""
        answer = self.get("/_sim/truth", min_upload_date=min_upload, max_upload_date=max_upload)
        return set(answer["ids"])

    def search_calls(self) -> int:
        return self.get("/_sim/stats")["calls"].get("flickr.photos.search", 0)

    def stop(self) -> None:
        child.stop(self.process)


def spawn(*args: str, key: str, timeout: float = 30.0) -> RunningSim:
    """Start `python -m lab.sims.flickr.server` on 127.0.0.1 with `key` accepted; `args`
    add options."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab.sims.flickr.server",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--keys",
            key,
            *args,
        ],
        cwd=CHECKOUT,
        stdout=subprocess.PIPE,
        text=True,
    )
    return RunningSim(process, child.ready_line(process, READY, "flickr_sim", timeout), key)
