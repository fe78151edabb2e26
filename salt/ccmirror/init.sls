include:
  - .user
  - .install
