{#- `harvester recheck` (#21) as a service, when pillar harvester:recheck:calls_per_hour is set:
    stored photos asked about again within its share of the key's calls (config.sls gives the
    worker the rest). Off (0, the default): no unit (a machine switched off stops its unit by
    hand: `systemctl disable --now ccmirror-recheck`). #}
{%- from "harvester/map.jinja" import harvester with context %}
{%- from "ccmirror/map.jinja" import ccmirror with context %}
{%- set recheck = harvester.recheck %}

include:
  - ccmirror
  - .config
{%- if recheck.calls_per_hour %}

harvester-recheck-unit-file-managed:
  file.managed:
    - name: {{ recheck.unit_file }}
    - source: salt://harvester/files/ccmirror-recheck.service.jinja
    - template: jinja
    - context:
        ccmirror: {{ ccmirror | json }}
        harvester: {{ {"config_file": harvester.config_file, "restart_seconds": harvester.restart_seconds, "calls_per_hour": recheck.calls_per_hour} | json }}
    - user: root
    - group: root
    - mode: "0644"

harvester-recheck-service-running:
  service.running:
    - name: {{ recheck.service }}
    - enable: True
    - watch:
      - file: harvester-recheck-unit-file-managed
      - file: harvester-config-file-managed
      - cmd: ccmirror-package-cmd-run
      - cmd: ccmirror-package-refresh-cmd-run
{%- endif %}
