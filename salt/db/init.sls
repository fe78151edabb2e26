include:
  - .package
  - .config
  - .service
  - .database
  - .migrate
  - .audit
  - .backup
  - .increment
