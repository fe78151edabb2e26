include:
  - .package
  - .user
  - .config
  - .service
  - .seaweedfs
