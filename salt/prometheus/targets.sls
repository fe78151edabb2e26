{#- The scrape targets, one file_sd file per job, from the Salt mine: each minion of the
    job's glob that has published its addresses (pillar/mine.sls) at its address in
    site:private_network, labelled with its id. `fleet.up` / `fleet.down` / `fleet.destroy`
    apply this state on the master once the fleet changed (a new minion publishes first; one
    whose key is deleted no longer matches a glob of the mine); Prometheus re-reads these
    files on its own. #}
{%- from "prometheus/map.jinja" import prometheus with context %}
{%- from "common/mine_addresses.jinja" import mine_addresses with context %}


{%- for job, scrape in prometheus.jobs | dictsort %}
{#-   Only an address in the private network: never a public one (no network: none). #}
{%-   set found = {} %}
{%-   do mine_addresses(scrape.minions, prometheus.mine_function, found) %}
{%-   set entries = [] %}
{%-   for minion, private in found | dictsort %}
{%-     do entries.append(dict(targets=[private[0] ~ ":" ~ scrape.port], labels=dict(minion=minion))) %}
{%-   endfor %}

prometheus-targets-{{ job }}-file-managed:
  file.managed:
    - name: {{ prometheus.targets_dir }}/{{ job }}.json
    - contents: {{ (entries | json) | json }}
    - user: root
    - group: root
    - mode: "0644"
    - makedirs: True
{%- endfor %}
