# hv-1's own secrets: its Flickr key and its database user's password. The Flickr secret
# stays on the master (secrets.json) until a signed call needs it.
harvester:
  flickr:
    api_key: example-flickr-api-key-of-hv-1
  db_password: example-hv-1-password
