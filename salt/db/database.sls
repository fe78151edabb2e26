{#- The database and its users, by salt/_states/ccmirror_mysql.py (Salt 3008 has no mysql
    states of its own). Salt's mysql module needs PyMySQL in Salt's own Python: it
    comes from the wheelhouse (a dependency of ccmirror), so this works offline too. #}
{%- from "db/map.jinja" import db, db_users with context %}
{%- from "ccmirror/map.jinja" import ccmirror with context %}
{%- set python = grains["pythonexecutable"] %}
{%- set connection = {"connection_unix_socket": db.socket, "connection_user": "root", "connection_pass": "", "connection_charset": "utf8mb4"} %}

include:
  - ccmirror.install

db-salt-pymysql-cmd-run:
  cmd.run:
    - name: >-
        {{ python }} -m pip install --quiet --disable-pip-version-check --no-index
        --find-links {{ ccmirror.wheelhouse }} PyMySQL
    - unless: {{ python }} -c "import pymysql"
    - reload_modules: True
    - require:
      - file: ccmirror-wheelhouse-file-recurse

db-database-ccmirror-mysql-database-present:
  ccmirror_mysql.database_present:
    - name: {{ db.database }}
    - character_set: utf8mb4
    - collate: utf8mb4_unicode_ci
{%- for key, value in connection | dictsort %}
    - {{ key }}: {{ value | json }}
{%- endfor %}
    - require:
      - cmd: db-salt-pymysql-cmd-run
      - service: db-mariadb-service-running
{%- for database in db_users.values() | map(attribute="database") | unique | sort %}
{%-   if database != db.database %}

db-database-{{ database }}-ccmirror-mysql-database-present:
  ccmirror_mysql.database_present:
    - name: {{ database }}
    - character_set: utf8mb4
    - collate: utf8mb4_bin
{%-     for key, value in connection | dictsort %}
    - {{ key }}: {{ value | json }}
{%-     endfor %}
    - require:
      - cmd: db-salt-pymysql-cmd-run
      - service: db-mariadb-service-running
{%-   endif %}
{%- endfor %}
{%- for name, user in db_users | dictsort %}

db-user-{{ name }}-ccmirror-mysql-user-present:
  ccmirror_mysql.user_present:
    - name: {{ name }}
    - host: {{ user.host | json }}
    - password: {{ user.password | json }}
{%-   for key, value in connection | dictsort %}
    - {{ key }}: {{ value | json }}
{%-   endfor %}
    - require:
      - ccmirror_mysql: db-database-ccmirror-mysql-database-present

db-user-{{ name }}-ccmirror-mysql-grants-present:
  ccmirror_mysql.grants_present:
    - name: {{ name }}-on-{{ user.database }}
    - grant: {{ user.grants }}
    - database: {{ user.database }}.*
    - user: {{ name }}
    - host: {{ user.host | json }}
{%-   for key, value in connection | dictsort %}
    - {{ key }}: {{ value | json }}
{%-   endfor %}
    - require:
      - ccmirror_mysql: db-user-{{ name }}-ccmirror-mysql-user-present
{%-   if user.database != db.database %}
      - ccmirror_mysql: db-database-{{ user.database }}-ccmirror-mysql-database-present
{%-   endif %}
{%- endfor %}
