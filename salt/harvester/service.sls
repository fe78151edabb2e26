{%- from "harvester/map.jinja" import harvester with context %}
{%- from "ccmirror/map.jinja" import ccmirror with context %}

include:
  - ccmirror
  - .config

harvester-unit-file-managed:
  file.managed:
    - name: {{ harvester.unit_file }}
    - source: salt://harvester/files/ccmirror-harvester.service.jinja
    - template: jinja
    - context:
        ccmirror: {{ ccmirror | json }}
        harvester: {{ {"config_file": harvester.config_file, "restart_seconds": harvester.restart_seconds} | json }}
    - user: root
    - group: root
    - mode: "0644"

harvester-service-running:
  service.running:
    - name: {{ harvester.service }}
    - enable: True
    - watch:
      - file: harvester-unit-file-managed
      - file: harvester-config-file-managed
      - cmd: ccmirror-package-cmd-run
      - cmd: ccmirror-package-refresh-cmd-run
