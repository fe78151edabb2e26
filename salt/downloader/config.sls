{%- from "downloader/map.jinja" import downloader with context %}
{%- from "ccmirror/map.jinja" import ccmirror with context %}
{%- from "ccmirror/metrics.jinja" import metrics_listen with context %}
{%- from "storage/s3_site.jinja" import bucket, endpoint with context %}
{%- set storage_host = salt["pillar.get"]("site:storage_host") %}
{%- set storage_port = salt["pillar.get"]("site:storage_port", 22) %}
{#- Where photos go: the site's S3 bucket (salt/storage/s3_site.jinja: SeaweedFS's gateway, or
    Spaces) with this downloader's own put-only key (pillar downloader:s3), or, on a site
    whose backend is rsync, the rsync target over SSH with its own key. #}
{%- set backend = salt["pillar.get"]("site:storage_backend", "rsync") %}
{%- set settings = {
      "queue_url": salt["pillar.get"]("site:queue_url"),
      "queue_token": downloader.queue_token,
      "worker": grains["id"],
      "spool": downloader.spool,
      "metrics": {"listen": metrics_listen(downloader.metrics)},
    } %}
{%- if backend == "rsync" %}
{%-   do settings.update({
        "storage": downloader.storage_user ~ "@" ~ storage_host,
        "storage_port": storage_port,
        "ssh_key": downloader.ssh_key_file,
        "known_hosts": downloader.known_hosts_file,
      }) %}
{%- else %}
{%-   if not downloader.s3 %}
{%-     do salt["test.exception"]("pillar downloader:s3 is not set (the private pillar root)") %}
{%-   endif %}
{%-   do settings.update({"storage": {
        "endpoint": endpoint,
        "bucket": bucket,
        "region": salt["pillar.get"]("site:storage_region", "us-east-1"),
        "access_key": downloader.s3.access_key,
        "secret_key": downloader.s3.secret_key,
      }}) %}
{%- endif %}
{%- do settings.update(downloader.settings) %}
{#- The site's image hosts (pillar site:fetch_allow_hosts), unless this role's own
    settings name them: the downloader fetches from no other host. #}
{%- set allow_hosts = salt["pillar.get"]("site:fetch_allow_hosts", []) %}
{%- set fetch = {"allow_hosts": allow_hosts} if allow_hosts else {} %}
{%- do fetch.update(settings.get("fetch", {})) %}
{%- if fetch %}
{%-   do settings.update({"fetch": fetch}) %}
{%- endif %}
{%- set host_pattern = storage_host if storage_port == 22 else "[" ~ storage_host ~ "]:" ~ storage_port %}

include:
  - ccmirror

downloader-config-file-managed:
  file.managed:
    - name: {{ downloader.config_file }}
    - contents: |
        # Managed by Salt (downloader): this droplet's queue token and storage target.
        {{ settings | json }}
    - user: {{ ccmirror.user }}
    - group: {{ ccmirror.group }}
    - mode: "0600"
    - show_changes: False
    - require:
      - file: ccmirror-config-dir-file-directory
      - user: ccmirror-service-user-user-present

{%- if backend == "rsync" %}

downloader-ssh-key-file-managed:
  file.managed:
    - name: {{ downloader.ssh_key_file }}
    - contents: {{ (downloader.ssh_key.strip() ~ "\n") | json }}
    - user: {{ ccmirror.user }}
    - group: {{ ccmirror.group }}
    - mode: "0600"
    - show_changes: False
    - require:
      - file: ccmirror-config-dir-file-directory
      - user: ccmirror-service-user-user-present

# The storage host's key, pinned: a push to any other host is refused.
downloader-known-hosts-file-managed:
  file.managed:
    - name: {{ downloader.known_hosts_file }}
    - contents: {{ (host_pattern ~ " " ~ downloader.storage_host_key.split()[:2] | join(" ") ~ "\n") | json }}
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - file: ccmirror-config-dir-file-directory
{%- else %}

# No SSH key is used on an S3 site: none is left on the droplet from an rsync one.
downloader-ssh-key-file-absent:
  file.absent:
    - name: {{ downloader.ssh_key_file }}
{%- endif %}

downloader-spool-file-directory:
  file.directory:
    - name: {{ downloader.spool }}
    - user: {{ ccmirror.user }}
    - group: {{ ccmirror.group }}
    - mode: "0750"
    - require:
      - user: ccmirror-service-user-user-present
