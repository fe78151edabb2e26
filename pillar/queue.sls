# `harvester serve` on the database server; token hashes come from the private root.
queue:
  settings:
    lease_seconds: 600
    max_items: 1000
