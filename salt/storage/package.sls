{%- from "storage/map.jinja" import storage with context %}

storage-tools-pkg-installed:
  pkg.installed:
    - pkgs: {{ storage.packages | json }}
