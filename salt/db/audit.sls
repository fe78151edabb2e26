{#- The storage audit's settings on a site whose photos are in an S3 bucket (pillar
    site:storage_backend seaweedfs or spaces): `salt-run audit.storage` runs `harvester
    audit-storage --s3` here with them (_modules/ccmirror_audit_s3.py). The migrate login, as
    the rsync audit's comparison uses, and the bucket with the audit's own S3 key (pillar
    storage_audit: list, read, and restore a version by copying it; s3.json on st-*). The
    bucket and endpoint are the downloaders' (salt/storage/s3_site.jinja). Root's, 0600, never shown in a diff; on an rsync site
    there is no such file (one left from an S3 site is removed with its key). #}
{%- from "db/map.jinja" import db, migrate_url with context %}
{%- from "storage/s3_site.jinja" import bucket, endpoint with context %}
{%- from "storage/backup_site.jinja" import backup_target with context %}
{%- set backend = salt["pillar.get"]("site:storage_backend", "rsync") %}

include:
  - ccmirror

{%- if backend == "rsync" %}

db-audit-config-file-absent:
  file.absent:
    - name: {{ db.audit_config }}
{%- endif %}
{%- if backend == "rsync" or not backup_target %}

db-backup-check-schedule-absent:
  schedule.absent:
    - name: ccmirror-backup-check
{%- endif %}
{%- if backend != "rsync" %}
{%-   set key = salt["pillar.get"]("storage_audit", {}) %}
{%-   if not (key.get("access_key") and key.get("secret_key")) %}
{%-     do salt["test.exception"]("pillar storage_audit is not set (the private pillar root)") %}
{%-   endif %}
{%-   set settings = {
        "db_url": migrate_url,
        "metrics": {"textfile_dir": db.metrics_textfile_dir},
        "storage": {
          "endpoint": endpoint,
          "bucket": bucket,
          "region": salt["pillar.get"]("site:storage_region", "us-east-1"),
          "access_key": key.access_key,
          "secret_key": key.secret_key,
        },
      } %}
{#-   The backup target (#20), when the site has one: db-1 measures its lag and restores
      photos from it with the backup cluster's reader key, and `salt-run audit.backup`
      copies what filer.backup left out with the sink's (pillar backup_target:sink, Write
      only; here alone, not in the catalog backup's settings). #}
{%-   if backup_target %}
{%-     if not backup_target.access_key %}
{%-       do salt["test.exception"]("pillar backup_target is not set (the private pillar root)") %}
{%-     endif %}
{%-     set sink = salt["pillar.get"]("backup_target:sink", {}) %}
{%-     set target = dict(backup_target) %}
{%-     if sink.get("access_key") %}
{%-       do target.update({"sink_access_key": sink.access_key, "sink_secret_key": sink.secret_key}) %}
{%-     endif %}
{%-     do settings.update({"backup_target": target}) %}
{%-   endif %}

db-audit-config-file-managed:
  file.managed:
    - name: {{ db.audit_config }}
    - contents: |
        # Managed by Salt (db): `harvester audit-storage --s3` (salt-run audit.storage).
        {{ settings | json }}
    - user: root
    - group: root
    - mode: "0600"
    - show_changes: False
    - require:
      - file: ccmirror-config-dir-file-directory
{%-   if backup_target %}

{#- The backup target's audit, daily by the minion's schedule (as the catalog backup's, in
    salt/db/backup.sls): filer.backup's holes behind its front copied from main; its success
    is the textfile series CcmirrorBackupCheckNotRun watches. #}
db-backup-check-schedule-present:
  schedule.present:
    - name: ccmirror-backup-check
    - function: ccmirror_audit_s3.backup_check
    - job_kwargs:
        margin_minutes: {{ db.backup_check.margin_minutes | int }}
    - hours: {{ db.backup_check.every_hours | int }}
    - splay: {{ db.backup_check.splay | int }}
    - maxrunning: 1
    - run_on_start: False
    - require:
      - file: db-audit-config-file-managed
{%-   endif %}
{%- endif %}
