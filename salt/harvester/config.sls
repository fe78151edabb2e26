{%- from "harvester/map.jinja" import harvester with context %}
{%- from "ccmirror/map.jinja" import ccmirror with context %}
{%- from "ccmirror/metrics.jinja" import metrics_listen with context %}
{%- set db_host = salt["pillar.get"]("site:db_host") %}
{%- set db_port = salt["pillar.get"]("site:db_port", 3306) %}
{#- Every flickr: setting; the secret and the access token only together (signed calls see
    every safety level; the private pillar gives all three or none). #}
{%- set signing = ["api_secret", "oauth_token", "oauth_token_secret"] %}
{%- set signed = harvester.flickr.api_secret and harvester.flickr.oauth_token and harvester.flickr.oauth_token_secret %}
{%- set flickr = {} %}
{%- for key, value in harvester.flickr | dictsort if signed or key not in signing %}
{%-   do flickr.update({key: value}) %}
{%- endfor %}
{#- The re-check service takes its share of the key's calls; the worker keeps the rest. #}
{%- if harvester.recheck.calls_per_hour %}
{%-   do flickr.update({"rate_limit_per_hour": harvester.key_calls_per_hour - harvester.recheck.calls_per_hour}) %}
{%- endif %}
{#- The site's image hosts: a photo whose image URL is elsewhere is refused at import. #}
{%- set allow_hosts = salt["pillar.get"]("site:fetch_allow_hosts", []) %}

include:
  - ccmirror

harvester-config-file-managed:
  file.managed:
    - name: {{ harvester.config_file }}
    - contents: |
        # Managed by Salt (harvester): this machine's own Flickr key (and token) and database user.
        db_url: "mysql://{{ grains["id"] | urlencode }}:{{ harvester.db_password | urlencode }}@{{ db_host }}:{{ db_port }}/{{ harvester.database }}"
        flickr: {{ flickr | json }}
        worker: {{ harvester.worker | json }}
        metrics: {{ {"listen": metrics_listen(harvester.metrics)} | json }}
{%- if allow_hosts %}
        fetch: {{ {"allow_hosts": allow_hosts} | json }}
{%- endif %}
    - user: {{ ccmirror.user }}
    - group: {{ ccmirror.group }}
    - mode: "0600"
    - show_changes: False
    - require:
      - file: ccmirror-config-dir-file-directory
      - user: ccmirror-service-user-user-present
