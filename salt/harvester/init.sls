include:
  - ccmirror
  - .config
  - .service
