# The site's own settings for the dl-* role over pillar/downloader.sls (by hand; see db.sls).
downloader:
  settings:
    lease_seconds: 900      # what the downloaders ask for (the queue caps it)
    fetch:
      concurrency: 32
