{%- from "queue/map.jinja" import queue with context %}
{%- from "db/map.jinja" import db, db_users with context %}
{%- from "ccmirror/map.jinja" import ccmirror with context %}
{%- set password = db_users[queue.db_user].password %}
{%- set settings = {"bind": queue.bind, "port": queue.port, "tokens_file": queue.tokens_file,
                    "status_allow": queue.status_allow} %}
{%- do settings.update(queue.settings) %}

include:
  - ccmirror

queue-config-file-managed:
  file.managed:
    - name: {{ queue.config_file }}
    - contents: |
        # Managed by Salt (queue): `harvester serve` on the database server.
        db_url: "mysql://{{ queue.db_user }}:{{ password | urlencode }}@localhost/{{ db.database }}?unix_socket={{ db.socket }}"
        queue: {{ settings | json }}
    - user: root
    - group: {{ ccmirror.group }}
    - mode: "0640"
    - show_changes: False
    - require:
      - file: ccmirror-config-dir-file-directory

# The service re-reads this file when it changes: adding a worker needs no restart.
queue-tokens-file-managed:
  file.managed:
    - name: {{ queue.tokens_file }}
    - contents: |
        # Managed by Salt (queue): worker -> sha256 of its bearer token
        tokens: {{ queue.tokens | json }}
    - user: root
    - group: {{ ccmirror.group }}
    - mode: "0640"
    - require:
      - file: ccmirror-config-dir-file-directory
