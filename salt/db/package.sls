{%- from "db/map.jinja" import db with context %}

db-mariadb-pkg-installed:
  pkg.installed:
    - pkgs: {{ db.packages | json }}
