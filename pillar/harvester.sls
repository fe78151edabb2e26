# Harvester machines; each one's Flickr key and DB password come from the private root.
harvester:
  flickr:
    rate_limit_per_hour: 3600
