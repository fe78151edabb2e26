include:
  - .package
  - .users
  - .config
  - .service
