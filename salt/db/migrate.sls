{#- `harvester migrate` as the migrate user, only while a migration is unapplied
    (`harvester status` refuses an out-of-date schema). #}
{%- from "db/map.jinja" import db, migrate_url with context %}
{%- from "ccmirror/map.jinja" import ccmirror with context %}
{%- set harvester = ccmirror.venv ~ "/bin/harvester --config " ~ db.migrate_config %}
{#- `harvester import-yfcc` runs with this config too: the site's image hosts. #}
{%- set allow_hosts = salt["pillar.get"]("site:fetch_allow_hosts", []) %}

include:
  - ccmirror
  - .database

db-migrate-config-file-managed:
  file.managed:
    - name: {{ db.migrate_config }}
    - contents: |
        # Managed by Salt (db): `harvester migrate` on the database server.
        db_url: "{{ migrate_url }}"
        metrics: {{ {"textfile_dir": db.metrics_textfile_dir} | json }}
{%- if allow_hosts %}
        fetch: {{ {"allow_hosts": allow_hosts} | json }}
{%- endif %}
    - user: root
    - group: root
    - mode: "0600"
    - show_changes: False
    - require:
      - file: ccmirror-config-dir-file-directory

db-migrate-cmd-run:
  cmd.run:
    - name: {{ harvester }} migrate
    - unless: {{ harvester }} status --json
    - require:
      - file: db-migrate-config-file-managed
      - cmd: ccmirror-package-cmd-run
      - cmd: ccmirror-package-refresh-cmd-run
      - ccmirror_mysql: db-user-migrate-ccmirror-mysql-grants-present
