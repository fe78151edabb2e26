"""`make lab` makes a droplet of the master role (Prometheus and Alertmanager run there) and
its summary says where the operator's page, Prometheus and Alertmanager are."""

from __future__ import annotations

from lab.mission.stages import Options
from lab.mission.watch import watch_lines


def test_make_labs_core_has_the_master_role(monkeypatch) -> None:
    for variable in ("LAB_DOWNLOADERS", "LAB_HARVESTERS", "LAB_PHOTOS"):
        monkeypatch.delenv(variable, raising=False)
    assert "master" in Options.from_env().core


def test_the_summary_names_the_page_and_prometheus_at_their_droplets() -> None:
    lines = watch_lines({"db-1": "10.213.0.3", "master": "10.213.0.2", "st-1": "10.213.0.4"})
    assert lines == [
        "page:       http://10.213.0.3:8700/ (the operator's page)",
        "prometheus: http://10.213.0.2:9090/classic/alerts, alertmanager http://10.213.0.2:9093/",
    ]
    assert watch_lines({"db-1": "10.213.0.3"}) == lines[:1]  # no master droplet: no Prometheus
