"""What the harvester and the downloader share: small, standard library only."""
