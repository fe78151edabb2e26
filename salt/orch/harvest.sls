{#- orch.harvest: seed search tasks, let the harvesters (services on hv-*) do them, then
    reconcile every source into the catalog, whose new CC photos enter the download queue.

    salt-run state.orchestrate orch.harvest \
      pillar='{harvest: {kind: timeslices, start: 2004-01-01, end: 2026-01-01} }'
    salt-run state.orchestrate orch.harvest \
      pillar='{harvest: {kind: queries, file: /root/terms.txt, timeout: 7200} }'
    salt-run state.orchestrate orch.harvest \
      pillar='{harvest: {yfcc: [/srv/yfcc/yfcc100m_dataset-0.bz2]} }'

    `yfcc`: YFCC100M files on the database minion, imported while the harvesters work
    (the reconcile after both merges them: the newest source of a photo wins).

    With no `kind`, nothing is seeded: the run waits for the tasks there are, then
    reconciles (how to finish a harvest interrupted midway).

    `notify_every`: seconds between the wait's progress lines to the operator's webhook
    (pillar monitoring:webhook_url; default 900, 0: only its start and end). #}
{%- set harvest = salt["pillar.get"]("harvest", {}) %}
{%- set seed_args = ["kind", "start", "end", "stride", "file"] %}

{%- if harvest.get("kind") %}

orch-harvest-seed-salt-runner:
  salt.runner:
    - name: batch.seed
{%- for key in seed_args %}
{%- if harvest.get(key) is not none %}
    - {{ key }}: {{ harvest[key] | string | yaml_dquote }}
{%- endif %}
{%- endfor %}
    - require_in:
      - salt: orch-harvest-workers-salt-function
{%- endif %}

# Harvesters given back their tasks by a drain or a deploy take work again.
orch-harvest-workers-salt-function:
  salt.function:
    - name: ccmirror.resume
    - tgt: "hv-*"

{%- if harvest.get("yfcc") %}

orch-harvest-yfcc-salt-runner:
  salt.runner:
    - name: batch.import_yfcc
    - paths: {{ harvest["yfcc"] | json }}
    - require_in:
      - salt: orch-harvest-reconcile-salt-runner
{%- endif %}

orch-harvest-wait-salt-runner:
  salt.runner:
    - name: batch.wait
    - until: harvested
    - timeout: {{ harvest.get("timeout", 86400) | int }}
    - interval: {{ harvest.get("interval", 30) | int }}
    - notify_every: {{ harvest.get("notify_every", 900) | json }}
    - require:
      - salt: orch-harvest-workers-salt-function

orch-harvest-reconcile-salt-runner:
  salt.runner:
    - name: batch.reconcile
    - require:
      - salt: orch-harvest-wait-salt-runner
