# st-1's own secrets: the storage host key pair, every downloader's public key, the S3
# identities its gateway accepts (each downloader's, the audit's, the admin's) and the
# filer's database password.
storage:
  host_key:
    private: |
      -----BEGIN OPENSSH PRIVATE KEY-----
      EXAMPLE-ONLY-not-a-key
      -----END OPENSSH PRIVATE KEY-----
    public: ssh-ed25519 AAAAexample-storage-host-public-key storage-host
  authorized_keys:
    dl-1: ssh-ed25519 AAAAexample-dl-1-public-key ccmirror-dl-1
  s3_identities:
    admin:
      access_key: CCMEXAMPLEADMINKEY0
      secret_key: example-s3-secret-of-the-admin
    audit:
      access_key: CCMEXAMPLEAUDITKEY0
      secret_key: example-s3-secret-of-the-audit
    dl-1:
      access_key: CCMEXAMPLEDL1ACCESS
      secret_key: example-s3-secret-of-dl-1
  filer_db_password: example-seaweedfs-password
