"""The push to an S3 bucket (SeaweedFS's gateway, DigitalOcean Spaces, any S3): `target`
(the settings' mapping, standard library only), `client` (one signed PUT), `push` (a spool
tree with push_tree's contract). Import the modules themselves: this package imports nothing,
so reading settings never loads botocore."""
