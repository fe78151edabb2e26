# The site's facts (pillar root 2, outside git): addresses from Terraform outputs later.
site:
  db_host: 10.0.0.2
  db_port: 3306
  queue_port: 8700
  queue_url: http://10.0.0.2:8700
  storage_host: 10.0.0.3
  storage_port: 2222
  private_network: 10.0.0.0/24
  master_host: 10.0.0.4
