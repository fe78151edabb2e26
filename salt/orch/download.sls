{#- orch.download: downloaders up, the queue drained, downloaders down again.

    salt-run state.orchestrate orch.download pillar='{download: {count: 10} }'
    salt-run state.orchestrate orch.download \
      pillar='{download: {count: 4, size: s-2vcpu-4gb, region: ams3, timeout: 7200} }'

    The droplets are removed only once the queue has no photo pending or leased: a run
    that times out leaves them working (run it again, or `salt-run fleet.down`). #}
{%- set download = salt["pillar.get"]("download", {}) %}
{%- set count = download.get("count", 1) | int %}

orch-download-fleet-up-salt-runner:
  salt.runner:
    - name: fleet.up
    - role: downloader
    - count: {{ count }}
{%- for key in ["size", "region", "image", "tags"] %}
{%- if download.get(key) is not none %}
    - {{ key }}: {{ download[key] | json }}
{%- endif %}
{%- endfor %}

orch-download-wait-salt-runner:
  salt.runner:
    - name: batch.wait
    - until: downloaded
    - timeout: {{ download.get("timeout", 86400) | int }}
    - interval: {{ download.get("interval", 30) | int }}
    - require:
      - salt: orch-download-fleet-up-salt-runner

orch-download-fleet-down-salt-runner:
  salt.runner:
    - name: fleet.down
    - role: downloader
    - count: {{ count }}
    - require:
      - salt: orch-download-wait-salt-runner
