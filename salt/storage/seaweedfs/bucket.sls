{#- The images bucket, made by the first master's node with the admin key (from the
    environment, never the command line): object lock and its default retention. #}
{%- from "storage/map.jinja" import storage with context %}
{%- from "storage/seaweedfs/map.jinja" import weed with context %}
{%- set script = "/usr/local/sbin/ccmirror-storage-bucket" %}
{%- set args = [weed.s3_url, weed.bucket, weed.retention.mode, weed.retention.years] | join(" ") %}

include:
  - .service

storage-weed-bucket-script-file-managed:
  file.managed:
    - name: {{ script }}
    - source: salt://storage/seaweedfs/files/ccmirror-storage-bucket.jinja
    - template: jinja
    - context:
        python: {{ weed.python }}
    - user: root
    - group: root
    - mode: "0755"
{%- if weed.address == weed.masters[0] %}

storage-weed-bucket-cmd-run:
  cmd.run:
    - name: {{ script }} {{ args }}
    - unless: {{ script }} --check {{ args }}
    - env:
        CCMIRROR_S3_ACCESS_KEY: {{ storage.s3_identities.admin.access_key | json }}
        CCMIRROR_S3_SECRET_KEY: {{ storage.s3_identities.admin.secret_key | json }}
    - output_loglevel: quiet
    - require:
      - file: storage-weed-bucket-script-file-managed
      - service: storage-weed-s3-service-running
{%- endif %}
