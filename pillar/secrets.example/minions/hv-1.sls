# hv-1's own secrets: its Flickr key, secret and access token (set_flickr_key with the file
# `harvester flickr-auth` wrote: every call signed) and its database user's password. A key
# set without a token gets api_key alone; its secret stays on the master (secrets.json).
harvester:
  flickr:
    api_key: example-flickr-api-key-of-hv-1
    api_secret: example-flickr-secret-of-hv-1
    oauth_token: example-flickr-oauth-token-of-hv-1
    oauth_token_secret: example-flickr-oauth-token-secret-of-hv-1
  db_password: example-hv-1-password
