"""Catalog backups into the object store (`harvester backup-catalog`, `restore-catalog`)."""
