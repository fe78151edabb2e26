# Downloader droplets; the queue token and storage key come from the private root.
downloader:
  settings:
    batch_size: 500
    min_free_mb: 1024

# The downloader needs nothing beyond ccmirror's own dependencies.
# The role's extra of the ccmirror wheel (salt/ccmirror/install.sls installs the union).
ccmirror:
  extras:
    downloader: [downloader]
