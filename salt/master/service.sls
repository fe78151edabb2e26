{%- from "master/map.jinja" import master with context %}
{%- if master.service %}

include:
  - .config

master-service-running:
  service.running:
    - name: {{ master.service }}
    - enable: True
    - watch:
      - file: master-config-file-managed
{%- endif %}
