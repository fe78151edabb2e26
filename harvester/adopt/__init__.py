"""`harvester import-tree` (`salt-run storage.import`): adopt a directory of an old layout into
the S3 bucket without fetching a photo from Flickr again. `tree` reads the directory (names,
image checks, digests); `job` matches files to the catalog, puts them with the downloader's own
S3 push (downloader/s3/push.py) and marks their photos stored. Import the modules themselves."""
