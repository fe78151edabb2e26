{#- Pillar top: roles by minion id glob; site facts and each minion's own secrets from the
    private root (the second pillar root: only this first root's top.sls is read). The id is
    the one the master authenticated (opts.id), never a grain. -#}
{%- set minion_id = opts.id %}
base:
  '*':
    - ccmirror
    - common
  'master*':
    - master
  'db-*':
    - db
    - queue
  'hv-*':
    - harvester
  'dl-*':
    - downloader
  'st-*':
    - storage
  '{{ minion_id }}':
    - ignore_missing: True
    - site
    - minions.{{ minion_id }}
