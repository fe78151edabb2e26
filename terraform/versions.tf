terraform {
  required_version = ">= 1.5.0"

  required_providers {
    digitalocean = {
      source  = "digitalocean/digitalocean"
      version = "~> 2.0"
    }
  }
}

# No token here, nor in any variable: the provider reads DIGITALOCEAN_TOKEN (or
# DIGITALOCEAN_ACCESS_TOKEN) from the operator's environment, and with storage_backend
# "spaces" the keys that create the bucket from SPACES_ACCESS_KEY_ID and
# SPACES_SECRET_ACCESS_KEY, so no secret is ever in a file, a plan or the state's inputs.
provider "digitalocean" {}
