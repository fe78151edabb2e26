# Downloader droplets; the queue token and storage key come from the private root.
downloader:
  settings:
    batch_size: 500
    min_free_mb: 1024
