{#- Pillar top: roles by minion id glob, each role's defaults here, then the site's own
    settings for the role (settings/<role>.sls, by hand, optional); then the site's facts and
    each minion's own secrets. Those live in the private root (the second pillar root: only
    this first root's top.sls is read). The id is the one the master authenticated (opts.id),
    never a grain. -#}
{%- set minion_id = opts.id %}
base:
  '*':
    - ccmirror
    - common
  'master*':
    - ignore_missing: True
    - master
    - settings.master
  'db-*':
    - ignore_missing: True
    - db
    - queue
    - settings.db
  'hv-*':
    - ignore_missing: True
    - harvester
    - settings.harvester
  'dl-*':
    - ignore_missing: True
    - downloader
    - settings.downloader
  'st-*':
    - ignore_missing: True
    - storage
    - settings.storage
  '{{ minion_id }}':
    - ignore_missing: True
    - site
    - minions.{{ minion_id }}
