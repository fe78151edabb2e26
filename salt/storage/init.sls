include:
  - .package
  - .user
  - .config
  - .service
