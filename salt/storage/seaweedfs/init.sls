include:
  - .package
  - .config
  - .service
  - .bucket
