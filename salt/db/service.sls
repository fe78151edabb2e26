{%- from "db/map.jinja" import db with context %}

# Made at boot by systemd-tmpfiles on a real machine; a lab droplet's fresh /run lacks it.
db-run-dir-file-directory:
  file.directory:
    - name: {{ salt["file.dirname"](db.socket) }}
    - user: mysql
    - group: mysql
    - mode: "0755"
    - require:
      - pkg: db-mariadb-pkg-installed

db-mariadb-service-running:
  service.running:
    - name: {{ db.service }}
    - enable: True
    - require:
      - file: db-run-dir-file-directory
    - watch:
      - file: db-mariadb-config-file-managed
      - pkg: db-mariadb-pkg-installed
