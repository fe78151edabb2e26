include:
  - ccmirror
  - .config
  - .service
  - .recheck
