{#- orch.deploy: build the wheelhouse and roll it out in batches (deploy.release).

    salt-run state.orchestrate orch.deploy
    salt-run state.orchestrate orch.deploy pillar='{deploy: {batch: 25%, wait: 600} }' #}
{%- set deploy = salt["pillar.get"]("deploy", {}) %}

orch-deploy-release-salt-runner:
  salt.runner:
    - name: deploy.release
    - batch: {{ deploy.get("batch", "10%") | string | yaml_dquote }}
    - wait: {{ deploy.get("wait", 300) | int }}

orch-deploy-status-salt-runner:
  salt.runner:
    - name: batch.status
    - require:
      - salt: orch-deploy-release-salt-runner
