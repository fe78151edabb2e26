# st-1's own secrets: the storage host key pair, every downloader's public key.
storage:
  host_key:
    private: |
      -----BEGIN OPENSSH PRIVATE KEY-----
      EXAMPLE-ONLY-not-a-key
      -----END OPENSSH PRIVATE KEY-----
    public: ssh-ed25519 AAAAexample-storage-host-public-key storage-host
  authorized_keys:
    dl-1: ssh-ed25519 AAAAexample-dl-1-public-key ccmirror-dl-1
