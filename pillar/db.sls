# MariaDB on the database server. Passwords come from the private root (db:passwords).
db:
  database: ccmirror
  settings:
    innodb_buffer_pool_size: 1G
    innodb_log_file_size: 256M
    max_connections: 200

# `harvester migrate`, `import-yfcc`, `reconcile` and the audit's database side run here.
# The role's extra of the ccmirror wheel (salt/ccmirror/install.sls installs the union).
ccmirror:
  extras:
    db: [harvester]
