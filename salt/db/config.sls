{%- from "db/map.jinja" import db with context %}

db-mariadb-config-file-managed:
  file.managed:
    - name: {{ db.config_file }}
    - source: salt://db/files/mariadb.cnf.jinja
    - template: jinja
    - context:
        db: {{ db | json }}
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - pkg: db-mariadb-pkg-installed
