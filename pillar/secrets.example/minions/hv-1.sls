# hv-1's own secrets: its Flickr key and secret, its database user's password.
harvester:
  flickr:
    api_key: example-flickr-api-key-of-hv-1
    api_secret: example-secret
  db_password: example-hv-1-password
