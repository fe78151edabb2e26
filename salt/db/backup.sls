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
{%- from "db/map.jinja" import db, db_users with context %}
{%- from "storage/s3_site.jinja" import bucket, endpoint with context %}
{%- from "storage/backup_site.jinja" import backup_target with context %}
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
{%-   set settings = {
        "db_url": "mysql://root@localhost/" ~ db.database ~ "?unix_socket=" ~ db.socket,
        "metrics": {"textfile_dir": db.metrics_textfile_dir},
        "storage": {
          "endpoint": endpoint,
          "bucket": bucket,
          "region": salt["pillar.get"]("site:storage_region", "us-east-1"),
          "access_key": key.access_key,
          "secret_key": key.secret_key,
        },
      } %}
{#-   Where a restore reads when main cannot answer (db-1 lost with main's names). #}
{%-   if backup_target and backup_target.access_key %}
{%-     do settings.update({"backup_target": backup_target}) %}
{%-   endif %}
{#-   A SeaweedFS site's names of every object are its filers' store, a database here: dumped
      with the catalog (one stamp), so that a new db-1 gets them back with it. #}
{%-   if backend == "seaweedfs" and "seaweedfs" in db_users %}
{%-     do settings.update({"catalog_backup": {"also_databases": [db_users.seaweedfs.database]} }) %}
{%-   endif %}

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
