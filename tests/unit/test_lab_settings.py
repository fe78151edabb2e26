"""The lab's own site settings (small SeaweedFS volumes, Prometheus at a lab's pace) are
written where the site has none, and never over a mission's own: the e2e's master settings
carry its webhook, and a droplet made again later (db-1's loss) must not drop it, or the
master's next highstate would change Alertmanager's receiver."""

from __future__ import annotations

from pathlib import Path

import yaml

from lab.fleet.lifecycle import LAB_MONITORING, write_lab_settings


def test_the_labs_settings_fill_in_and_leave_the_sites_own(tmp_path: Path) -> None:
    write_lab_settings(tmp_path)
    master = tmp_path / "settings" / "master.sls"
    assert yaml.safe_load(master.read_text()) == LAB_MONITORING
    assert (tmp_path / "settings" / "storage.sls").exists()

    own = {**LAB_MONITORING, "monitoring": {"webhook_url": "http://10.213.0.1:9/hook"}}
    master.write_text(yaml.safe_dump(own))
    write_lab_settings(tmp_path)
    assert yaml.safe_load(master.read_text()) == own
