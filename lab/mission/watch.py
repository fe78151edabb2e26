"""Where the operator of `make lab` watches the fleet it made: the queue's page on db-1 (the
lab's host may read it without a token: it is the site's master_host), and Prometheus and
Alertmanager on the master droplet (salt/prometheus), at the ports of the formulas'
defaults. Debian's Prometheus serves its classic pages (`/classic/...`): the package has no
React UI."""

from __future__ import annotations

QUEUE_PORT = 8700  # pillar site:queue_port's default
PROMETHEUS_PORT = 9090  # salt/prometheus/defaults.yaml
ALERTMANAGER_PORT = 9093


def watch_lines(addresses: dict[str, str]) -> list[str]:
    """The summary's lines for the droplets' addresses (id -> address) the lab has."""
    lines = []
    if "db-1" in addresses:
        lines.append(f"page:       http://{addresses['db-1']}:{QUEUE_PORT}/ (the operator's page)")
    if "master" in addresses:
        master = addresses["master"]
        lines.append(
            f"prometheus: http://{master}:{PROMETHEUS_PORT}/classic/alerts,"
            f" alertmanager http://{master}:{ALERTMANAGER_PORT}/"
        )
    return lines
