# Every minion publishes its IPv4 addresses to the Salt mine (at start and hourly); the
# master's Prometheus scrapes each one at the address in site:private_network
# (salt/prometheus/targets.sls).
mine_functions:
  ccmirror_addresses:
    mine_function: network.ip_addrs
