include:
  - ccmirror
  - .package
  - .config
  - .service
