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

{#-   Written beside, then published by a rename: Salt's own write renames a 0600 file into
      place and chmods it after, and a Prometheus woken by the rename cannot read it, and
      skips the chmod's event; the change would wait for file_sd's next re-read. #}
{%-   set published = prometheus.targets_dir ~ "/" ~ job ~ ".json" %}
{%-   set staged = prometheus.targets_dir ~ "/staged/" ~ job ~ ".json" %}

prometheus-targets-{{ job }}-file-managed:
  file.managed:
    - name: {{ staged }}
    - contents: {{ (entries | json) | json }}
    - user: root
    - group: root
    - mode: "0644"
    - makedirs: True

prometheus-targets-{{ job }}-cmd-run:
  cmd.run:
    - name: install -m 0644 {{ staged }} {{ published }}.new && mv -f {{ published }}.new {{ published }}
    - unless: cmp -s {{ staged }} {{ published }}
    - require:
      - file: prometheus-targets-{{ job }}-file-managed
{%- endfor %}
