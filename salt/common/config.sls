{%- from "common/map.jinja" import common with context %}

common-sshd-config-file-managed:
  file.managed:
    - name: {{ common.ssh.config_file }}
    - source: salt://common/files/sshd_config.jinja
    - template: jinja
    - context:
        ssh: {{ common.ssh | json }}
    - user: root
    - group: root
    - mode: "0644"
    - makedirs: True
    - require:
      - pkg: common-base-pkg-installed

common-timesyncd-config-file-managed:
  file.managed:
    - name: {{ common.time.config_file }}
    - contents: |
        # Managed by Salt (common): where this machine takes its time from.
        [Time]
        NTP={{ common.time.ntp_servers | join(" ") }}
    - user: root
    - group: root
    - mode: "0644"
    - makedirs: True

common-journald-config-file-managed:
  file.managed:
    - name: {{ common.journald.config_file }}
    - contents: |
        # Managed by Salt (common): the journal's share of the disk.
        [Journal]
        SystemMaxUse={{ common.journald.system_max_use }}
        MaxRetentionSec={{ common.journald.max_retention_sec }}
    - user: root
    - group: root
    - mode: "0644"
    - makedirs: True

# Where there is no journald (a lab droplet) there is nothing to restart.
common-journald-restart-cmd-run:
  cmd.run:
    - name: systemctl restart systemd-journald
    - onlyif: test -S /run/systemd/journal/socket
    - onchanges:
      - file: common-journald-config-file-managed

common-logrotate-config-file-managed:
  file.managed:
    - name: {{ common.logrotate.config_file }}
    - contents: |
        # Managed by Salt (common): logs our services write outside the journal.
        /var/log/ccmirror/*.log {
            daily
            rotate {{ common.logrotate.rotate }}
            maxsize {{ common.logrotate.maxsize }}
            compress
            delaycompress
            missingok
            notifempty
            copytruncate
        }
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - pkg: common-base-pkg-installed

common-upgrades-periodic-file-managed:
  file.managed:
    - name: {{ common.upgrades.periodic_file }}
    - contents: |
        // Managed by Salt (common): refresh the lists and install security fixes daily.
        APT::Periodic::Update-Package-Lists "1";
        APT::Periodic::Unattended-Upgrade "1";
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - pkg: common-base-pkg-installed

common-upgrades-config-file-managed:
  file.managed:
    - name: {{ common.upgrades.config_file }}
    - contents: |
        // Managed by Salt (common): security updates only; a reboot is the operator's call.
        Unattended-Upgrade::Origins-Pattern {
            "origin=Debian,codename=${distro_codename}-security,label=Debian-Security";
        };
        Unattended-Upgrade::Automatic-Reboot "{{ "true" if common.upgrades.automatic_reboot else "false" }}";
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - pkg: common-base-pkg-installed
