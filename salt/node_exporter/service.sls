{%- from "node_exporter/map.jinja" import node_exporter with context %}

include:
  - .package
  - .config

node_exporter-service-running:
  service.running:
    - name: {{ node_exporter.service }}
    - enable: True
    - require:
      - file: node_exporter-textfile-file-directory
    - watch:
      - pkg: node_exporter-package-pkg-installed
      - file: node_exporter-defaults-file-managed
