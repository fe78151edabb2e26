# The static core of ccmirror on DigitalOcean: one VPC, the master/db droplet, the storage
# droplet and its volume, grouped in a project. The downloader and harvester droplets are not
# here: the Salt master makes and removes them at run time (salt-run fleet.up / fleet.down)
# in this VPC, with the role tags below, which the fleet firewall (firewall.tf) follows.

locals {
  mariadb_port = 3306
  salt_ports   = "4505-4506" # publish and return ports: minions connect to the master
  project_tag  = var.name
  role_tags    = { for role in var.fleet_roles : role => "${var.name}-${role}" }
}

resource "digitalocean_vpc" "core" {
  name        = "${var.name}-vpc"
  region      = var.region
  ip_range    = var.vpc_cidr
  description = "ccmirror: master/db, storage and the downloader/harvester fleet"
}

resource "digitalocean_tag" "project" {
  name = local.project_tag
}

resource "digitalocean_tag" "role" {
  for_each = merge(local.role_tags, { master = "${var.name}-master", storage = "${var.name}-storage" })
  name     = each.value
}

# The master/db droplet: the salt-master, MariaDB (the catalog and the download state) and
# the queue service (`harvester serve`) live together on this one machine. The queue service
# and MariaDB talk over the loopback; harvesters reach MariaDB and downloaders the queue
# service over the VPC only. Its disk holds the database, hence backups and prevent_destroy.
resource "digitalocean_droplet" "master_db" {
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
    digitalocean_droplet.master_db.urn,
    digitalocean_droplet.storage.urn,
    digitalocean_volume.storage.urn,
  ]
}
