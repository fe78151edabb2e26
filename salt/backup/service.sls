{#- `weed filer.backup`: follows the main filer's metadata log from its checkpoint (kept by the
    main filer, so a restart or a new bk droplet goes on where it stood) and puts every new
    object into the backup cluster's bucket with the sink's key: deletes are never sent
    (-doDeleteFiles=false), and an overwrite in the main bucket is a new version there, a new
    object here. Its config holds the sink's key: 0600, never shown in a diff. #}
{%- from "storage/seaweedfs/map.jinja" import weed with context %}
{%- from "backup/map.jinja" import backup with context %}
{%- set command = [weed.weed, "-config_dir=" ~ weed.config_dir, "filer.backup",
                   "-filer=" ~ backup.source_filer, "-filerPath=" ~ backup.source_path,
                   "-doDeleteFiles=false"] %}
{%- if backup.filer_proxy %}
{%-   do command.append("-filerProxy") %}
{%- endif %}

include:
  - storage.seaweedfs.bucket

backup-replication-config-file-managed:
  file.managed:
    - name: {{ weed.config_dir }}/replication.toml
    - source: salt://backup/files/replication.toml.jinja
    - template: jinja
    - context:
        target: {{ backup.target | json }}
    - user: {{ weed.user }}
    - group: {{ weed.group }}
    - mode: "0600"
    - show_changes: False
    - require:
      - file: storage-weed-config-dir-file-directory

backup-weed-unit-file-managed:
  file.managed:
    - name: {{ backup.unit_file }}
    - source: salt://storage/seaweedfs/files/weed.service.jinja
    - template: jinja
    - context:
        weed: {{ weed | json }}
        server: backup
        after: ["ccmirror-weed-s3"]
        exec_start: {{ command | join(" ") | json }}
        wait_for_db: False
        reload: False
    - user: root
    - group: root
    - mode: "0644"

backup-weed-service-running:
  service.running:
    - name: {{ backup.service }}
    - enable: True
    - require:
      - cmd: storage-weed-bucket-cmd-run
    - watch:
      - cmd: storage-weed-package-cmd-run  # a new weed
      - file: backup-replication-config-file-managed
      - file: backup-weed-unit-file-managed
