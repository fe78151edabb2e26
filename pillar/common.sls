# Every machine: admin users (none by default), time, logs, upgrades, ssh.
common:
  users: {}
  ssh:
    permit_root_login: prohibit-password
  journald:
    system_max_use: 1G
  time:
    ntp_servers:
      - 0.debian.pool.ntp.org
      - 1.debian.pool.ntp.org
