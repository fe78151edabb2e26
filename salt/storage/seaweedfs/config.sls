{#- SeaweedFS's account, directories and configs: the filer's store (MariaDB on db-1) and the
    S3 gateway's identities, both secrets, so 0600 and never shown in a diff. #}
{%- from "storage/map.jinja" import storage with context %}
{%- from "storage/seaweedfs/map.jinja" import weed with context %}

include:
  - storage.volume  # the data volume: the directories and units require its mount
  - .package

storage-weed-user-user-present:
  user.present:
    - name: {{ weed.user }}
    - home: {{ weed.home }}
    - createhome: True
    - shell: /usr/sbin/nologin
    - system: True
    - usergroup: True

{%- set dirs = [("master", weed.master_dir), ("data", weed.data_dir), ("config", weed.config_dir)] %}
{%- if weed.filer_store == "leveldb2" %}
{%-   do dirs.append(("filer", weed.filer_dir)) %}
{%- endif %}
{%- for name, path in dirs %}

storage-weed-{{ name }}-dir-file-directory:
  file.directory:
    - name: {{ path }}
    - user: {{ weed.user }}
    - group: {{ weed.group }}
    - mode: "0750"
    - makedirs: True
    - require:
      - user: storage-weed-user-user-present
{%-   if name in ("data", "filer") and storage.volume_device %}
      - mount: storage-volume-root-mount-mounted  # on the volume, never on the root disk
{%-   endif %}
{%- endfor %}

storage-weed-filer-config-file-managed:
  file.managed:
    - name: {{ weed.config_dir }}/filer.toml
    - source: salt://storage/seaweedfs/files/filer.toml.jinja
    - template: jinja
    - context:
        weed: {{ weed | json }}
        password: {{ storage.get("filer_db_password", "") | json }}
    - user: {{ weed.user }}
    - group: {{ weed.group }}
    - mode: "0600"
    - show_changes: False
    - require:
      - file: storage-weed-config-dir-file-directory
{%- if weed.filer_store == "mysql2" %}

storage-weed-filer-login-file-managed:
  file.managed:
    - name: {{ weed.config_dir }}/filer.my.cnf
    - source: salt://storage/seaweedfs/files/filer.my.cnf.jinja
    - template: jinja
    - context:
        weed: {{ weed | json }}
        password: {{ storage.filer_db_password | json }}
    - user: {{ weed.user }}
    - group: {{ weed.group }}
    - mode: "0600"
    - show_changes: False
    - require:
      - file: storage-weed-config-dir-file-directory
{%- endif %}

storage-weed-s3-config-file-managed:
  file.managed:
    - name: {{ weed.config_dir }}/s3.json
    - source: salt://storage/seaweedfs/files/s3.json.jinja
    - template: jinja
    - context:
        weed: {{ weed | json }}
        identities: {{ storage.s3_identities | json }}
        revoked: {{ storage.get("s3_revoked", []) | json }}
    - user: {{ weed.user }}
    - group: {{ weed.group }}
    - mode: "0600"
    - show_changes: False
    - require:
      - file: storage-weed-config-dir-file-directory
{%- if weed.is_backup %}

{#- The backup cluster's filer takes HTTP writes and deletes only with a token signed by a key
    made here, once, and never leaving this node (its S3 gateway signs with it: every weed
    here reads /etc/seaweedfs/security.toml). db-1 reaches this filer to list the backup's
    names (GETs, unsigned), and without the key a compromised db-1 could otherwise delete every
    copy through it, past the bucket's object lock. #}
storage-weed-filer-guard-cmd-run:
  cmd.run:
    - name: >-
        umask 077 &&
        key=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') &&
        printf '# Made once by Salt (storage): the filer write key, of this node only\n[jwt.filer_signing]\nkey = "%s"\n' "$key"
        > {{ weed.config_dir }}/security.toml.new &&
        chown {{ weed.user }}:{{ weed.group }} {{ weed.config_dir }}/security.toml.new &&
        mv {{ weed.config_dir }}/security.toml.new {{ weed.config_dir }}/security.toml
    - creates: {{ weed.config_dir }}/security.toml
    - require:
      - file: storage-weed-config-dir-file-directory
{%- endif %}
