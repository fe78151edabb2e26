{%- from "common/map.jinja" import common with context %}

common-base-pkg-installed:
  pkg.installed:
    - pkgs: {{ common.packages | json }}
