# dl-1's own secrets: its queue token, its storage keys (ssh for rsync, S3 for the object
# store); the storage host's public key.
downloader:
  queue_token: ccmq_example-token-of-dl-1
  ssh_key: |
    -----BEGIN OPENSSH PRIVATE KEY-----
    EXAMPLE-ONLY-not-a-key
    -----END OPENSSH PRIVATE KEY-----
  storage_host_key: ssh-ed25519 AAAAexample-storage-host-public-key storage-host
  s3:
    access_key: CCMEXAMPLEDL1ACCESS
    secret_key: example-s3-secret-of-dl-1
