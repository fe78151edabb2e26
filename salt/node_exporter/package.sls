{%- from "node_exporter/map.jinja" import node_exporter with context %}

node_exporter-package-pkg-installed:
  pkg.installed:
    - name: {{ node_exporter.package }}
