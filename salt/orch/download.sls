{#- orch.download: downloaders up, the queue drained, downloaders down again.

    salt-run state.orchestrate orch.download pillar='{download: {count: 10} }'
    salt-run state.orchestrate orch.download \
      pillar='{download: {count: 4, keep: 1, size: s-2vcpu-4gb, region: ams3, timeout: 7200} }'

    count: downloaders in all while the queue drains (fleet.up makes the missing ones);
    keep: how many of them stay afterwards (default 0; counted against the droplets there
    are then: one destroyed meanwhile is not made up for by taking one more). The droplets
    are taken away only once the queue has no photo pending or leased: a run that times
    out leaves them working (run it again, or `salt-run fleet.down`). After they go, the
    database's and storage's states are applied: their queue tokens and storage keys are
    revoked there. `notify_every`: seconds between the wait's progress lines to the
    operator's webhook (pillar monitoring:webhook_url; default 900, 0: only start and end). #}
{%- set download = salt["pillar.get"]("download", {}) %}
{%- set count = download.get("count", 1) | int %}
{%- set keep = download.get("keep", 0) | int %}

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
    - notify_every: {{ download.get("notify_every", 900) | json }}
    - require:
      - salt: orch-download-fleet-up-salt-runner
{%- if count > keep %}

orch-download-fleet-down-salt-runner:
  salt.runner:
    - name: fleet.down
    - role: downloader
    - keep: {{ keep }}
    - require:
      - salt: orch-download-wait-salt-runner

orch-download-revoke-db-salt-state:
  salt.state:
    - tgt: "db-*"
    - sls:
      - queue
    - require:
      - salt: orch-download-fleet-down-salt-runner

orch-download-revoke-st-salt-state:
  salt.state:
    - tgt: "st-*"
    - sls:
      - storage
    - require:
      - salt: orch-download-fleet-down-salt-runner
{%- endif %}
