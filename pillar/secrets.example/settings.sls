# The site's own settings over the roles' defaults in pillar/ (pillar root 2, outside git,
# written by hand; `salt-run secrets.*` never touches it). Every minion sees it: never a secret here.
queue:
  settings:
    lease_seconds: 900      # a slow storage link: leases live longer
downloader:
  settings:
    lease_seconds: 900      # what the downloaders ask for (the queue caps it)
harvester:
  restart_seconds: 30
