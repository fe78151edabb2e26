# db-1's own secrets: every database password and the queue's token hashes.
db:
  passwords:
    migrate: example-migrate-password
    queue: example-queue-password
    hv-1: example-hv-1-password
queue:
  tokens:
    dl-1: "sha256:0000000000000000000000000000000000000000000000000000000000000000"
