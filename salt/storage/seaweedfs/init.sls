include:
  - .config
  - .service
  - .bucket
