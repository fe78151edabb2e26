include:
  - .package
  - .targets
  - .config
  - .service
