{#- The scrape targets, one file_sd file per job, from the Salt mine: each minion of the
    job's glob that has published its addresses (pillar/mine.sls) at its address in
    site:private_network, labelled with its id. `fleet.up` / `fleet.down` change the mine
    (a new minion publishes on start; a deleted key takes its mine data with it), and a
    highstate of the master rewrites these files; Prometheus re-reads them on its own. #}
{%- from "prometheus/map.jinja" import prometheus with context %}
{%- set network = salt["pillar.get"]("site:private_network", "") %}


{%- for job, scrape in prometheus.jobs | dictsort %}
{%-   set entries = [] %}
{%-   for minion, addresses in salt["mine.get"](scrape.minions, prometheus.mine_function) | dictsort %}
{#-     Only an address in the private network: never a public one (no network: none). #}
{%-     set private = [] %}
{%-     for address in (addresses if addresses is sequence and addresses is not string else []) %}
{%-       if network and salt["network.ip_in_subnet"](address, network) %}
{%-         do private.append(address) %}
{%-       endif %}
{%-     endfor %}
{%-     if private %}
{%-       set target = (private | sort | first) ~ ":" ~ scrape.port %}
{%-       do entries.append(dict(targets=[target], labels=dict(minion=minion))) %}
{%-     endif %}
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
