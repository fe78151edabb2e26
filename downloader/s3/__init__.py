"""The push to an S3 bucket (SeaweedFS's gateway, DigitalOcean Spaces, any S3): `target`
(the settings' mapping, standard library only), `client` (one signed PUT), `push` (a spool
tree with push_tree's contract), `sigv4` (its signature). Standard library only: the
downloader's push needs no S3 library."""
