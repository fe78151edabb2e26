{#- orch.rotate: one secret rotated with zero downtime, every step of `secrets.rotate`
    followed by the states it names (see _runners/secrets.py's `rotate`), each step only
    after the one before succeeded; a storage key is checked with a real push by every
    downloader before the old one is retired, and again after, and the backup keys by db-1
    reading the backup cluster.

    salt-run state.orchestrate orch.rotate pillar='{rotate: {what: storage_key} }'
    salt-run state.orchestrate orch.rotate pillar='{rotate: {what: queue_tokens} }'
    salt-run state.orchestrate orch.rotate pillar='{rotate: {what: db_passwords} }'
    salt-run state.orchestrate orch.rotate pillar='{rotate: {what: backup_keys} }'

    A failure stops the run with the rotation where it stood: the old secret still works
    until `retire`, and running the same orchestration again completes it. #}
{%- set what = salt["pillar.get"]("rotate:what", "") %}
{#- Per rotation, per step: [target, states] to apply after it, then whether to check
    storage with a real push. #}
{%- set plans = {
  "storage_key": {
    "start": [["st-*", ["storage"]]],
    "switch": [["dl-*", ["downloader"]], ["db-*", ["db"]]],
    "retire": [["st-*", ["storage"]]],
  },
  "queue_tokens": {
    "start": [["db-*", ["queue"]]],
    "switch": [["dl-*", ["downloader"]]],
    "retire": [["db-*", ["queue"]]],
  },
  "db_passwords": {
    "start": [],
    "switch": [["db-*", ["db", "queue"]], ["hv-*", ["harvester"]]],
    "retire": [],
  },
  "backup_keys": {
    "start": [["bk-*", ["backup"]]],
    "switch": [["bk-*", ["backup"]], ["db-*", ["db"]]],
    "retire": [["bk-*", ["backup"]]],
  },
} %}
{#- After which steps a real use of the new secret is checked: a push by every downloader,
    db-1 reading the backup cluster (its reader's key) and writing a probe there (its sink's
    key, which backup-check copies with). [target, function, its keyword arguments] #}
{%- set checks = {
  "storage_key": {"switch": ["dl-*", "ccmirror.check_storage", {}],
                  "retire": ["dl-*", "ccmirror.check_storage", {}]},
  "backup_keys": {"switch": ["db-*", "ccmirror_audit_s3.backup_lag", {"probe_sink": True}],
                  "retire": ["db-*", "ccmirror_audit_s3.backup_lag", {"probe_sink": True}]},
} %}

{%- if what not in plans %}

orch-rotate-pillar-test-fail-without-changes:
  test.fail_without_changes:
    - name: orch-rotate-pillar
    - comment: "pillar rotate:what must be one of {{ plans | list | sort | join(', ') }}, not '{{ what }}'"
{%- else %}
{%- set previous = [] %}
{%- for step in ["start", "switch", "retire"] %}

orch-rotate-{{ step }}-salt-runner:
  salt.runner:
    - name: secrets.rotate
    - what: {{ what }}
    - step: {{ step }}
{%- if previous %}
    - require:
      - salt: {{ previous[-1] }}
{%- endif %}
{%- do previous.append("orch-rotate-" ~ step ~ "-salt-runner") %}
{%- for target, states in plans[what][step] %}

orch-rotate-{{ step }}-{{ target | replace("-*", "") }}-salt-state:
  salt.state:
    - tgt: "{{ target }}"
    - sls: {{ states | json }}
    - require:
      - salt: {{ previous[-1] }}
{%- do previous.append("orch-rotate-" ~ step ~ "-" ~ target | replace("-*", "") ~ "-salt-state") %}
{%- endfor %}
{%- if step in checks.get(what, {}) %}
{%- set target, function, kwargs = checks[what][step] %}

orch-rotate-{{ step }}-check-salt-function:
  salt.function:
    - name: {{ function }}
    - tgt: "{{ target }}"
{%- if kwargs %}
    - kwarg: {{ kwargs | json }}
{%- endif %}
    - require:
      - salt: {{ previous[-1] }}
{%- do previous.append("orch-rotate-" ~ step ~ "-check-salt-function") %}
{%- endif %}
{%- endfor %}
{%- endif %}
