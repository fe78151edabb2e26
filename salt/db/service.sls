{%- from "db/map.jinja" import db with context %}

db-mariadb-service-running:
  service.running:
    - name: {{ db.service }}
    - enable: True
    - watch:
      - file: db-mariadb-config-file-managed
      - pkg: db-mariadb-pkg-installed
