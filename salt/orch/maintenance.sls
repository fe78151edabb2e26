{#- orch.maintenance: the fleet into or out of maintenance (see _runners/maintenance.py).

    salt-run state.orchestrate orch.maintenance pillar='{maintenance: on}'
    salt-run state.orchestrate orch.maintenance pillar='{maintenance: {mode: on, wait: 600} }'
    salt-run state.orchestrate orch.maintenance pillar='{maintenance: off}' #}
{%- set given = salt["pillar.get"]("maintenance", none) %}
{%- set settings = given if given is mapping else {"mode": given} %}
{#- Salt reads on/off as YAML booleans. #}
{%- set mode = {True: "on", False: "off"}.get(settings.get("mode"), settings.get("mode")) %}

{%- if mode == "on" %}

orch-maintenance-on-salt-runner:
  salt.runner:
    - name: maintenance.on
    - wait: {{ settings.get("wait", 300) | int }}
    - retry_after: {{ settings.get("retry_after", 300) | int }}
{%- elif mode == "off" %}

orch-maintenance-off-salt-runner:
  salt.runner:
    - name: maintenance.off
{%- else %}

orch-maintenance-pillar-test-fail-without-changes:
  test.fail_without_changes:
    - name: orch-maintenance-pillar
    - comment: "pillar maintenance must be on or off (or {mode: on, wait: 600}), not {{ given }}"
{%- endif %}

orch-maintenance-status-salt-runner:
  salt.runner:
    - name: maintenance.status
