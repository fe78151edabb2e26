{#- A changed ARGS (address, retention) restarts a service; a changed config or rule file
    is reloaded (SIGHUP: no gap in scraping or alerting). The target files need neither:
    Prometheus watches them. #}
{%- from "prometheus/map.jinja" import prometheus with context %}

include:
  - .package
  - .config

prometheus-service-running:
  service.running:
    - name: {{ prometheus.service }}
    - enable: True
    - require:
      - file: prometheus-config-file-managed
    - watch:
      - pkg: prometheus-packages-pkg-installed
      - file: prometheus-defaults-file-managed

prometheus-reload-cmd-run:
  cmd.run:
    - name: systemctl reload {{ prometheus.service }}
    - require:
      - service: prometheus-service-running
    - onchanges:
      - file: prometheus-config-file-managed
      - file: prometheus-rules-file-managed

prometheus-alertmanager-service-running:
  service.running:
    - name: {{ prometheus.alertmanager.service }}
    - enable: True
    - require:
      - file: prometheus-alertmanager-config-file-managed
    - watch:
      - pkg: prometheus-packages-pkg-installed
      - file: prometheus-alertmanager-defaults-file-managed

prometheus-alertmanager-reload-cmd-run:
  cmd.run:
    - name: systemctl reload {{ prometheus.alertmanager.service }}
    - require:
      - service: prometheus-alertmanager-service-running
    - onchanges:
      - file: prometheus-alertmanager-config-file-managed
