# The site's own settings for the db-* role over pillar/db.sls and pillar/queue.sls (pillar
# root 2, outside git, written by hand; `salt-run secrets.*` never touches settings/).
# Only db-* minions see it; still, no secret here: secrets go in minions/<id>.sls.
queue:
  settings:
    lease_seconds: 900      # a slow storage link: leases live longer
