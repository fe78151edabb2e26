# `harvester serve` on the database server; token hashes come from the private root.
# `status_allow` (who reads the status without a token) defaults to loopback, the queue's
# address and the site's master_host and monitoring_networks: see salt/queue/map.jinja.
queue:
  settings:
    lease_seconds: 600
    max_items: 1000
    max_open_leases: 4        # a worker with this many unexpired leases gets 429
    max_body_bytes: 0         # 0: max_items x 4 KiB + 64 KiB, room for a full report

# The queue service's web stack (FastAPI, uvicorn, Jinja2, prometheus-client).
# The role's extra of the ccmirror wheel (salt/ccmirror/install.sls installs the union).
ccmirror:
  extras:
    queue: [queue]
