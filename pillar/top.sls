{#- Pillar top: roles by minion id glob, each role's defaults here, then the site's own
    settings for the role (settings/<role>.sls, by hand, optional); then the site's facts and
    each minion's own secrets. Those live in the private root (the second pillar root: only
    this first root's top.sls is read). The id is the one the master authenticated (opts.id),
    never a grain. -#}
{%- set minion_id = opts.id %}
{#- The id is a target and names files below, and Salt matches targets as globs and expands
    globs in SLS names (`minions.*-1` would be every *-1 minion's secrets): only a plain id,
    lower-case letters, digits and '-' (the rule of check_minion_id in _runners/secrets.py),
    gets more than the fleet-wide defaults. The group makes regex_match's answer truthy;
    \Z, unlike $, refuses a final newline. #}
{%- set plain_id = minion_id is string and minion_id | regex_match('([a-z0-9][a-z0-9-]*)\\Z') %}
base:
  '*':
    - ccmirror
    - common
    - mine
{#- An id that is not plain gets the fleet-wide defaults above and nothing else. #}
{%- if plain_id %}
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
  'bk-*':
    - ignore_missing: True
    - backup
    - settings.backup
  '{{ minion_id }}':
    - ignore_missing: True
    - site
    - minions.{{ minion_id }}
{%- endif %}
