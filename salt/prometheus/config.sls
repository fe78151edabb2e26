{%- from "prometheus/map.jinja" import prometheus with context %}
{%- set alertmanager = prometheus.alertmanager %}
{%- set address = prometheus.listen_address ~ ":" ~ prometheus.port %}

include:
  - .package

prometheus-rules-file-directory:
  file.directory:
    - name: {{ prometheus.rules_dir }}
    - user: root
    - group: root
    - mode: "0755"
    - makedirs: True

# Copied as it is (no template: its Go templates are Prometheus'); promtool checks it
# before it replaces the one in use.
prometheus-rules-file-managed:
  file.managed:
    - name: {{ prometheus.rules_dir }}/ccmirror.rules.yml
    - source: salt://prometheus/files/rules/ccmirror.rules.yml
    - check_cmd: promtool check rules
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - file: prometheus-rules-file-directory
      - pkg: prometheus-packages-pkg-installed

prometheus-config-file-managed:
  file.managed:
    - name: {{ prometheus.config_file }}
    - source: salt://prometheus/files/prometheus.yml.jinja
    - template: jinja
    - context:
        prometheus: {{ prometheus | json }}
    - check_cmd: promtool check config
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - file: prometheus-rules-file-managed
      - pkg: prometheus-packages-pkg-installed

prometheus-defaults-file-managed:
  file.managed:
    - name: {{ prometheus.defaults_file }}
    - contents: |
        # Managed by Salt (prometheus): on the master's private address only.
        ARGS="--config.file={{ prometheus.config_file }} --web.listen-address={{ address }} --storage.tsdb.retention.time={{ prometheus.retention }}"
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - pkg: prometheus-packages-pkg-installed

# Holds the webhook's URL (a secret): readable by root and Alertmanager's user only.
prometheus-alertmanager-config-file-managed:
  file.managed:
    - name: {{ alertmanager.config_file }}
    - source: salt://prometheus/files/alertmanager.yml.jinja
    - template: jinja
    - context:
        alertmanager: {{ alertmanager | json }}
    - check_cmd: amtool check-config
    - user: root
    - group: prometheus
    - mode: "0640"
    - show_changes: False
    - require:
      - pkg: prometheus-packages-pkg-installed

# No cluster (one Alertmanager): Debian's default would listen for peers on 0.0.0.0:9094.
prometheus-alertmanager-defaults-file-managed:
  file.managed:
    - name: {{ alertmanager.defaults_file }}
    - contents: |
        # Managed by Salt (prometheus): on the master's private address only, no cluster.
        ARGS="--config.file={{ alertmanager.config_file }} --web.listen-address={{ alertmanager.url }} --cluster.listen-address="
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - pkg: prometheus-packages-pkg-installed
