{%- from "prometheus/map.jinja" import prometheus with context %}

prometheus-packages-pkg-installed:
  pkg.installed:
    - pkgs: {{ prometheus.packages | json }}
