{#- The catalog's scheduled backup into the bucket (pillar site:storage_backend not rsync):
    `harvester backup-catalog` (harvester/backup/catalog.py: mariadb-dump --single-transaction
    | zstd, one multipart object under the prefix, the newest `keep` kept) with its settings
    file: root over the unix socket (the restore creates and drops databases), and the bucket
    with db-1's own S3 key (pillar catalog_backup; s3.json's `backup` identity reaches the
    prefix only). Root's, 0600, never shown in a diff.

    Run by the minion's schedule (ccmirror_backup.backup), not a systemd timer: the lab's
    init (docker-systemctl-replacement) runs no timers, so a timer would never fire there;
    the schedule runs the same on both, one at a time (maxrunning), and each run's return
    (key, bytes, or the error) is a job on the master. On an rsync site there is no bucket:
    no schedule, no settings file. `salt-run storage.restore_catalog` restores the newest. #}
{%- from "db/map.jinja" import db with context %}
{%- import_yaml "storage/defaults.yaml" as storage_defaults %}
{%- set backend = salt["pillar.get"]("site:storage_backend", "rsync") %}
{%- set backup = db.backup %}

include:
  - ccmirror

{%- if backend == "rsync" %}

db-backup-schedule-absent:
  schedule.absent:
    - name: ccmirror-catalog-backup

db-backup-config-file-absent:
  file.absent:
    - name: {{ backup.config }}
{%- else %}
{%-   set key = salt["pillar.get"]("catalog_backup", {}) or {} %}
{%-   if not (key.get("access_key") and key.get("secret_key")) %}
{%-     do salt["test.exception"]("pillar catalog_backup is not set (the private pillar root: secrets.init)") %}
{%-   endif %}
{%-   set nodes = salt["pillar.get"]("site:storage_nodes", {}) %}
{%-   set first = nodes[nodes | sort | first] if nodes else salt["pillar.get"]("site:storage_host", "") %}
{%-   set gateway = salt["pillar.get"]("storage:seaweedfs:ports:s3", storage_defaults.storage.seaweedfs.ports.s3) %}
{%-   set endpoint = salt["pillar.get"]("site:storage_endpoint", "") or ("http://" ~ first ~ ":" ~ gateway if first else "") %}
{%-   if not endpoint %}
{%-     do salt["test.exception"]("pillar site:storage_endpoint, storage_nodes or storage_host is not set (site.sls)") %}
{%-   endif %}
{%-   set settings = {
        "db_url": "mysql://root@localhost/" ~ db.database ~ "?unix_socket=" ~ db.socket,
        "storage": {
          "endpoint": endpoint,
          "bucket": salt["pillar.get"]("site:storage_bucket", "images"),
          "region": salt["pillar.get"]("site:storage_region", "us-east-1"),
          "access_key": key.access_key,
          "secret_key": key.secret_key,
        },
      } %}

db-backup-config-file-managed:
  file.managed:
    - name: {{ backup.config }}
    - contents: |
        # Managed by Salt (db): `harvester backup-catalog` / `restore-catalog` (ccmirror_backup).
        {{ settings | json }}
    - user: root
    - group: root
    - mode: "0600"
    - show_changes: False
    - require:
      - file: ccmirror-config-dir-file-directory

db-backup-schedule-present:
  schedule.present:
    - name: ccmirror-catalog-backup
    - function: ccmirror_backup.backup
    - job_kwargs:
        prefix: {{ backup.prefix | json }}
        keep: {{ backup.keep | int }}
    - hours: {{ backup.every_hours | int }}
    - splay: {{ backup.splay | int }}
    - maxrunning: 1
    - run_on_start: False
    - require:
      - file: db-backup-config-file-managed
{%- endif %}
