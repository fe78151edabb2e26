"""What every machine of the fleet has: hardened sshd, time sync, the upgrades and log limits,
and no TCP port open beyond those its roles need."""

from __future__ import annotations

import pytest

from tests.infra.checks import listening_tcp

SSH_PORT = 22


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
    ports = {SSH_PORT: "*"}
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
        if allowed[port] != "*":
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
