# Harvester machines; each one's Flickr key and DB password come from the private root.
harvester:
  flickr:
    rate_limit_per_hour: 3600

# The role's extra of the ccmirror wheel (salt/ccmirror/install.sls installs the union).
ccmirror:
  extras:
    harvester: [harvester]
