# dl-1's own secrets: its queue token, its storage key; the storage host's public key.
downloader:
  queue_token: ccmq_example-token-of-dl-1
  ssh_key: |
    -----BEGIN OPENSSH PRIVATE KEY-----
    EXAMPLE-ONLY-not-a-key
    -----END OPENSSH PRIVATE KEY-----
  storage_host_key: ssh-ed25519 AAAAexample-storage-host-public-key storage-host
