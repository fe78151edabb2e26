"""The mirror check reaches the lab's images bucket where the storage formula serves it: its
own constants must follow salt/storage/defaults.yaml (a port or bucket moved there and not here
would make `make lab` check an empty or unreachable store)."""

from __future__ import annotations

import yaml

from lab.mission.mirror_check import LAB_S3_PORT
from lab.processes.seaweedfs_s3 import IMAGES_BUCKET
from tests.conftest import ROOT


def test_the_lab_check_uses_the_storage_formulas_gateway_port_and_bucket() -> None:
    defaults = yaml.safe_load((ROOT / "salt" / "storage" / "defaults.yaml").read_text())
    weed = defaults["storage"]["seaweedfs"]
    assert (weed["ports"]["s3"], weed["bucket"]) == (LAB_S3_PORT, IMAGES_BUCKET)
