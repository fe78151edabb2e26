# Roles by minion id glob (the contract with the lab and the fleet: pillar/README.md).
base:
  '*':
    - common
    - node_exporter
  'master*':
    - master
    - prometheus
  'db-*':
    - db
    - queue
  'hv-*':
    - harvester
  'dl-*':
    - downloader
  'st-*':
    - storage
  'bk-*':
    - backup
