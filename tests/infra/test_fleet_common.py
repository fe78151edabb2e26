"""What every machine of the fleet has: hardened sshd, time sync, the upgrades and log limits,
and no TCP port open beyond those its roles need."""

from __future__ import annotations

import ipaddress

import pytest

from tests.infra.checks import listening_tcp

SSH_PORT = 22
PRIVATE = "private"  # any address of the site's private network (site:private_network)
# Prometheus' exporters and servers (salt/node_exporter, salt/prometheus, the daemons'
# metrics.listen): on the minion's private address only.
NODE_EXPORTER_PORT = 9100
METRICS_PORTS = {"harvester": 9711, "downloader": 9712, "prometheus": 9090}
ALERTMANAGER_PORT = 9093


def test_base_packages_are_installed(host) -> None:
    for name in ("openssh-server", "systemd-timesyncd", "logrotate", "unattended-upgrades"):
        assert host.package(name).is_installed, name


def test_sshd_is_hardened_enabled_and_running(host) -> None:
    config = host.file("/etc/ssh/sshd_config.d/50-ccmirror.conf")
    assert config.is_file and config.user == "root" and config.mode == 0o644
    assert config.contains("^PasswordAuthentication no")
    ssh = host.service("ssh")
    assert ssh.is_enabled and ssh.is_running


def test_time_is_synchronised_by_timesyncd(host) -> None:
    timesyncd = host.service("systemd-timesyncd")
    assert timesyncd.is_enabled and timesyncd.is_running


def test_unattended_security_upgrades_are_on(host) -> None:
    periodic = host.file("/etc/apt/apt.conf.d/20auto-upgrades")
    assert periodic.contains('APT::Periodic::Unattended-Upgrade "1"')


def test_journald_and_logrotate_are_bounded(host) -> None:
    assert host.file("/etc/systemd/journald.conf.d/50-ccmirror.conf").contains("SystemMaxUse=")
    assert host.file("/etc/logrotate.d/ccmirror").contains("maxsize")


# SeaweedFS's servers (salt/storage/seaweedfs), each with its gRPC port at +10000.
SEAWEEDFS_PORTS = {"volume": 8080, "filer": 8888, "s3": 8333}
SEAWEEDFS_MASTER_PORT = 9333
GRPC_OFFSET = 10000


def allowed_ports(roles: set[str], site: dict, minion_id: str) -> dict[int, str]:
    """Port -> the one address it may listen on ('*' for any) for a minion of these roles."""
    ports = {SSH_PORT: "*", NODE_EXPORTER_PORT: PRIVATE}
    for role, port in METRICS_PORTS.items():
        if role in roles:
            ports[port] = PRIVATE
    if "prometheus" in roles:
        ports[ALERTMANAGER_PORT] = PRIVATE
    if "db" in roles:
        ports[site.get("db_port", 3306)] = site["db_host"]
    if "queue" in roles:
        ports[site["queue_port"]] = site["db_host"]
    if "storage" in roles and site.get("storage_backend", "rsync") == "rsync":
        ports[site["storage_port"]] = site["storage_host"]  # the rsync target's sshd
    elif "storage" in roles:
        nodes = site.get("storage_nodes") or {minion_id: site["storage_host"]}
        servers = list(SEAWEEDFS_PORTS.values())
        if minion_id in sorted(nodes)[: 3 if len(nodes) >= 3 else 1]:  # raft: 3, or 1
            servers.append(SEAWEEDFS_MASTER_PORT)
        for port in servers:
            ports[port] = ports[port + GRPC_OFFSET] = nodes[minion_id]
    if "backup" in roles:  # the backup cluster's one node: every server, master too
        for port in [*SEAWEEDFS_PORTS.values(), SEAWEEDFS_MASTER_PORT]:
            ports[port] = ports[port + GRPC_OFFSET] = site["backup_nodes"][minion_id]
    return ports


def test_ports_listen_only_where_they_should(
    host, roles: set[str], site: dict, minion_id: str
) -> None:
    allowed = allowed_ports(roles, site, minion_id)
    for address, port in listening_tcp(host):
        if address.startswith("127.") or address == "::1":
            continue  # loopback is the machine's own business
        assert port in allowed, f"{address}:{port} is open on a {sorted(roles)} minion"
        if allowed[port] == PRIVATE:
            network = ipaddress.ip_network(site["private_network"])
            assert ipaddress.ip_address(address) in network, f"port {port} listens on {address}"
        elif allowed[port] != "*":
            assert address == allowed[port], f"port {port} listens on {address}"
    listening = {port for _, port in listening_tcp(host)}
    assert set(allowed) <= listening, f"expected listening: {sorted(allowed)}"


@pytest.mark.role("harvester", "downloader", "db")
def test_the_service_account_and_the_code(host) -> None:
    user = host.user("ccmirror")
    assert user.exists and user.home == "/var/lib/ccmirror"
    assert user.shell in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")
    config_dir = host.file("/etc/ccmirror")
    assert config_dir.is_directory and config_dir.user == "root"
    assert config_dir.group == "ccmirror" and not config_dir.mode & 0o007
    assert host.file("/opt/ccmirror/venv/bin/python").exists
    version = host.run("/opt/ccmirror/venv/bin/pip show ccmirror")
    assert version.rc == 0 and "Name: ccmirror" in version.stdout


def test_node_exporter_serves_the_machine_and_the_textfile_directory(host, site: dict) -> None:
    exporter = host.service("prometheus-node-exporter")
    assert exporter.is_enabled and exporter.is_running
    assert host.file("/var/lib/prometheus/node-exporter").is_directory
    private = [
        address
        for address, port in listening_tcp(host)
        if port == NODE_EXPORTER_PORT
        and ipaddress.ip_address(address) in ipaddress.ip_network(site["private_network"])
    ]
    assert len(private) == 1, private
    scraped = host.run(
        "python3 -c 'import sys, urllib.request; "
        "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "
        f"http://{private[0]}:{NODE_EXPORTER_PORT}/metrics"
    )
    assert scraped.rc == 0 and "node_filesystem_avail_bytes" in scraped.stdout, scraped.stderr
