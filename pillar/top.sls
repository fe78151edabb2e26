{#- Pillar top: roles by minion id glob; from the private root (the second pillar root: only
    this first root's top.sls is read) the site's facts, the site's own settings over the
    roles' defaults here, and each minion's own secrets. The id is the one the master
    authenticated (opts.id), never a grain. -#}
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
    - settings
    - minions.{{ minion_id }}
