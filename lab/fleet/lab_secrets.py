"""The lab's private pillar root: site facts and throw-away secrets, one file per minion.

    write_lab_secrets(directory, minion_ids, site)

writes, under `directory` (made 0700; the master's second pillar root), the layout of
pillar/README.md: `site.sls`, `minions/<id>.sls` (0600, that minion's own secrets) and the
record `secrets.json` (0600, every secret made so far; lab/sims/flickr/service.py reads the
harvesters' Flickr keys from it). The writer is the one the `secrets` runner reaches through
`__utils__` (`_utils/private_pillar.py`, loaded by lab/fleet/salt_utils.py): a runner cannot
import `lab`, so the shared code lives there, and the lab and a real master write the same
files. The lab differs in
one way: it makes throw-away Flickr keys (the Flickr simulator accepts any), where a real
master waits for `salt-run secrets.set_flickr_key`.

`site` carries what the lab knows about its addresses: `db_host` and `storage_host`
(required), `storage_port` (2222), `queue_port` (8700), `db_port` (3306), `private_network`
(a CIDR database users may connect from; default any host) and `flickr_api_url`.

Idempotent: a second call keeps every secret made before, adds the minions it has not seen
and rewrites only the files that change, so `db-*` and `st-*` learn about a downloader added
later (refresh their pillar and apply their states again).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from lab.fleet.salt_utils import plain_util


def writer() -> ModuleType:
    """The private pillar's one writer (_utils/private_pillar.py), as the runners reach it."""
    return plain_util("private_pillar")


STATE_FILE = writer().RECORD_FILE
LabSecretsError = writer().SecretsError


def write_lab_secrets(directory: Path, minion_ids: Iterable[str], site: dict[str, Any]) -> None:
    """Create or update the private pillar root at `directory` for `minion_ids` (added to
    those of earlier calls) and `site` (see the module docstring)."""
    writer().write_private_root(Path(directory), minion_ids, site, throwaway_flickr_keys=True)
