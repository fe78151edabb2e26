# db-1's own secrets: every database password, the queue's token hashes and the storage
# audit's S3 key.
db:
  passwords:
    migrate: example-migrate-password
    queue: example-queue-password
    hv-1: example-hv-1-password
    seaweedfs: example-seaweedfs-password
queue:
  tokens:
    dl-1: "sha256:0000000000000000000000000000000000000000000000000000000000000000"
storage_audit:
  access_key: CCMEXAMPLEAUDITKEY0
  secret_key: example-s3-secret-of-the-audit
