# The static core of ccmirror on DigitalOcean: one VPC, the salt master, the database
# droplet (MariaDB and the queue service), the storage droplet and its volume, grouped in a
# project. Each droplet's name is its hostname and minion id, and salt/top.sls gives it its
# roles by that id: `master` the master role only, `db-*` db and queue, `st-*` storage. The
# downloader and harvester droplets are not here: the Salt master makes and removes them at
# run time (salt-run fleet.up / fleet.down) in this VPC, with the role tags below. Every
# firewall (firewall.tf) opens a service to the role tags that use it, not to the whole VPC.

locals {
  mariadb_port = 3306
  salt_ports   = "4505-4506" # publish and return ports: minions connect to the master
  project_tag  = var.name
  core_roles   = ["master", "db", "storage"]
  role_tags    = { for role in concat(local.core_roles, var.fleet_roles) : role => "${var.name}-${role}" }
}

resource "digitalocean_vpc" "core" {
  name        = "${var.name}-vpc"
  region      = var.region
  ip_range    = var.vpc_cidr
  description = "ccmirror: master, db, storage and the downloader/harvester fleet"
}

resource "digitalocean_tag" "project" {
  name = local.project_tag
}

resource "digitalocean_tag" "role" {
  for_each = local.role_tags
  name     = each.value
}

# The salt master only: it holds the private pillar root (every secret) and the minions'
# accepted keys, hence backups and prevent_destroy. It serves nothing but Salt.
resource "digitalocean_droplet" "master" {
  name       = var.master_name
  region     = var.region
  size       = var.master_size
  image      = var.image
  vpc_uuid   = digitalocean_vpc.core.id
  ssh_keys   = var.ssh_key_fingerprints
  backups    = var.master_backups
  monitoring = true
  ipv6       = false
  tags       = [digitalocean_tag.project.name, digitalocean_tag.role["master"].name]

  lifecycle {
    prevent_destroy = true
    ignore_changes  = [image, ssh_keys]
  }
}

# The database droplet: MariaDB (the catalog and the download state) and the queue service
# (`harvester serve`), which talk over the loopback; harvesters reach MariaDB and downloaders
# the queue service over the VPC. Its disk holds the database, hence backups and
# prevent_destroy.
resource "digitalocean_droplet" "db" {
  name       = var.db_name
  region     = var.region
  size       = var.db_size
  image      = var.image
  vpc_uuid   = digitalocean_vpc.core.id
  ssh_keys   = var.ssh_key_fingerprints
  backups    = var.db_backups
  monitoring = true
  ipv6       = false
  tags       = [digitalocean_tag.project.name, digitalocean_tag.role["db"].name]

  # A new key or a newer image must not rebuild the database server.
  lifecycle {
    prevent_destroy = true
    ignore_changes  = [image, ssh_keys]
  }
}

# The storage droplet: a write-only rsync target (a second sshd with rrsync on
# storage_rsync_port) in front of the volume that holds the mirror.
resource "digitalocean_droplet" "storage" {
  name       = var.storage_name
  region     = var.region
  size       = var.storage_size
  image      = var.image
  vpc_uuid   = digitalocean_vpc.core.id
  ssh_keys   = var.ssh_key_fingerprints
  monitoring = true
  ipv6       = false
  tags       = [digitalocean_tag.project.name, digitalocean_tag.role["storage"].name]

  lifecycle {
    ignore_changes = [image, ssh_keys]
  }
}

# The mirrored images and manifests. It outlives the storage droplet: a rebuilt droplet is
# attached to the same volume.
resource "digitalocean_volume" "storage" {
  name                    = "${var.name}-storage"
  region                  = var.region
  size                    = var.storage_volume_gb
  initial_filesystem_type = "ext4"
  description             = "ccmirror: images and attribution manifests"
  tags                    = [digitalocean_tag.project.name]

  lifecycle {
    prevent_destroy = true
  }
}

resource "digitalocean_volume_attachment" "storage" {
  droplet_id = digitalocean_droplet.storage.id
  volume_id  = digitalocean_volume.storage.id
}

resource "digitalocean_project" "ccmirror" {
  name        = var.name
  description = "Mirror of Creative Commons photos on Flickr, run from a Salt master"
  purpose     = "Service or API"
  environment = var.environment
  resources = [
    digitalocean_droplet.master.urn,
    digitalocean_droplet.db.urn,
    digitalocean_droplet.storage.urn,
    digitalocean_volume.storage.urn,
  ]
}
