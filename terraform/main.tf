# The static core of ccmirror on DigitalOcean: one VPC, the salt master, the database
# droplet (MariaDB and the queue service), the store of photos and manifests, grouped in a
# project. The store is SeaweedFS on storage_count st-* droplets, each with its own volume
# (storage_backend "seaweedfs"), or a versioned DigitalOcean Spaces bucket ("spaces").
# Each droplet's name is its hostname and minion id, and salt/top.sls gives it its roles by
# that id: `master` the master role only, `db-*` db and queue, `st-*` storage, `bk-*` backup
# (backup_region: bk-1 in a VPC of its own in another region, peered with this one). The
# downloader and harvester droplets are not here: the Salt master makes and removes them at
# run time (salt-run fleet.up / fleet.down) in this VPC, with the role tags below. Every
# firewall (firewall.tf) opens a service to the role tags that use it, not to the whole VPC.

locals {
  mariadb_port = 3306
  salt_ports   = "4505-4506" # publish and return ports: minions connect to the master
  project_tag  = var.name
  core_roles   = ["master", "db", "storage", "backup"]
  role_tags    = { for role in concat(local.core_roles, var.fleet_roles) : role => "${var.name}-${role}" }

  seaweedfs = var.storage_backend == "seaweedfs"
  spaces    = var.storage_backend == "spaces"
  # No storage droplet at all with Spaces: the store is DigitalOcean's.
  storage_count = local.seaweedfs ? var.storage_count : 0
  # SeaweedFS's masters keep their raft quorum on an odd number: three on st-1..st-3 when
  # there are three or more storage droplets, else one on st-1.
  storage_master_count = local.storage_count >= 3 ? 3 : min(local.storage_count, 1)
  spaces_endpoint      = "https://${var.region}.digitaloceanspaces.com"

  # SeaweedFS's default ports, as the storage role runs it; each server's gRPC port is its
  # HTTP port + 10000.
  s3_gateway_port       = 8333
  weed_master_port      = 9333
  weed_master_grpc_port = 19333
  weed_volume_port      = 8080
  weed_volume_grpc_port = 18080
  weed_filer_port       = 8888
  weed_filer_grpc_port  = 18888

  # The store's S3 endpoint: st-1's gateway (any storage droplet's would do), or Spaces.
  storage_nodes    = { for droplet in digitalocean_droplet.storage : droplet.name => droplet.ipv4_address_private }
  storage_volumes  = { for index, droplet in digitalocean_droplet.storage : droplet.name => "/dev/disk/by-id/scsi-0DO_Volume_${digitalocean_volume.storage[index].name}" }
  storage_endpoint = local.seaweedfs ? "http://${digitalocean_droplet.storage[0].ipv4_address_private}:${local.s3_gateway_port}" : local.spaces_endpoint
  storage_host     = local.seaweedfs ? digitalocean_droplet.storage[0].ipv4_address_private : "${var.region}.digitaloceanspaces.com"
  storage_port     = local.seaweedfs ? local.s3_gateway_port : 443

  # The tags the master's fleet.up puts on the droplets it makes (storage: role=storage).
  fleet_tags = merge(
    { for role in concat(var.fleet_roles, ["storage"]) : role => digitalocean_tag.role[role].name },
    { project = digitalocean_tag.project.name },
  )

  # The backup cluster (#20): bk-1 in backup_region, "" for none.
  backup         = var.backup_region != ""
  backup_count   = local.backup ? 1 : 0
  backup_nodes   = { for droplet in digitalocean_droplet.backup : droplet.name => droplet.ipv4_address_private }
  backup_volumes = { for index, droplet in digitalocean_droplet.backup : droplet.name => "/dev/disk/by-id/scsi-0DO_Volume_${digitalocean_volume.backup[index].name}" }
  # Whether the two VPCs' ranges overlap: their network addresses under the shorter prefix.
  vpc_prefixes = [tonumber(split("/", var.vpc_cidr)[1]), tonumber(split("/", var.backup_vpc_cidr)[1])]
  vpcs_overlap = (
    cidrhost("${split("/", var.vpc_cidr)[0]}/${min(local.vpc_prefixes...)}", 0) ==
    cidrhost("${split("/", var.backup_vpc_cidr)[0]}/${min(local.vpc_prefixes...)}", 0)
  )

  # The droplets salt/top.sls gives roles to by their names (the core_minions output).
  core_droplets = concat([digitalocean_droplet.master, digitalocean_droplet.db], digitalocean_droplet.storage, digitalocean_droplet.backup)
}

resource "digitalocean_vpc" "core" {
  name        = "${var.name}-vpc"
  region      = var.region
  ip_range    = var.vpc_cidr
  description = "ccmirror: master, db, the st-* storage droplets and the downloader/harvester fleet"
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

  # Made after the peering: see digitalocean_vpc_peering.backup.
  depends_on = [digitalocean_vpc_peering.backup]

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

  # Made after the peering: see digitalocean_vpc_peering.backup.
  depends_on = [digitalocean_vpc_peering.backup]

  # A new key or a newer image must not rebuild the database server.
  lifecycle {
    prevent_destroy = true
    ignore_changes  = [image, ssh_keys]
  }
}

# The storage droplets st-1..st-N (SeaweedFS only): a volume server on each one's volume, a
# filer (its metadata in MariaDB on db-1, so the loss of a storage droplet loses no name)
# and an S3 gateway on each, masters on the first three. Their names are the st-* ids
# salt/top.sls gives the storage role; `fleet.up role=storage` adds more at run time.
resource "digitalocean_droplet" "storage" {
  count      = local.storage_count
  name       = "st-${count.index + 1}"
  region     = var.region
  size       = var.storage_size
  image      = var.image
  vpc_uuid   = digitalocean_vpc.core.id
  ssh_keys   = var.ssh_key_fingerprints
  monitoring = true
  ipv6       = false
  tags       = [digitalocean_tag.project.name, digitalocean_tag.role["storage"].name]

  # Made after the peering: see digitalocean_vpc_peering.backup.
  depends_on = [digitalocean_vpc_peering.backup]

  lifecycle {
    ignore_changes = [image, ssh_keys]
  }
}

# One volume per storage droplet: SeaweedFS's volume files, which salt/storage/volume.sls
# mounts at the storage root (site:storage_volumes). Each outlives its droplet (a rebuilt
# st-N is attached to the same volume), hence prevent_destroy: lowering storage_count, or
# leaving SeaweedFS for Spaces, fails the plan instead of deleting photos. Its name,
# <name>-st-N, is the one rule `fleet.up role=storage` names the volumes of later st-N by
# (_utils/fleet_volumes.py), so that both find a volume an earlier st-N left.
resource "digitalocean_volume" "storage" {
  count                   = local.storage_count
  name                    = "${var.name}-st-${count.index + 1}"
  region                  = var.region
  size                    = var.storage_volume_gb
  initial_filesystem_type = "ext4"
  description             = "ccmirror: SeaweedFS volume data of st-${count.index + 1} (at most 16 TiB per volume: grow by adding droplets)"
  tags                    = [digitalocean_tag.project.name]

  lifecycle {
    prevent_destroy = true
  }
}

resource "digitalocean_volume_attachment" "storage" {
  count      = local.storage_count
  droplet_id = digitalocean_droplet.storage[count.index].id
  volume_id  = digitalocean_volume.storage[count.index].id
}

# The Spaces bucket (storage_backend "spaces" only), versioned so that an overwrite or a
# delete adds a version instead of destroying one. The provider reads the Spaces keys that
# create it from SPACES_ACCESS_KEY_ID and SPACES_SECRET_ACCESS_KEY in the operator's
# environment; the downloaders' keys are made outside Terraform (their secrets would be in
# its state) and go to the private pillar.
resource "digitalocean_spaces_bucket" "images" {
  count  = local.spaces ? 1 : 0
  name   = var.storage_bucket
  region = var.region
  acl    = "private"

  versioning {
    enabled = true
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "digitalocean_project" "ccmirror" {
  name        = var.name
  description = "Mirror of Creative Commons photos on Flickr, run from a Salt master"
  purpose     = "Service or API"
  environment = var.environment
  resources = concat(
    [digitalocean_droplet.master.urn, digitalocean_droplet.db.urn],
    digitalocean_droplet.storage[*].urn,
    digitalocean_volume.storage[*].urn,
    digitalocean_spaces_bucket.images[*].urn,
    digitalocean_droplet.backup[*].urn,
    digitalocean_volume.backup[*].urn,
  )
}

# The backup cluster (#20, backup_region; none when it is ""): bk-1, a one-node SeaweedFS of
# its own in another region (salt/backup), which `weed filer.backup` fills by pulling from the
# main cluster's filer. In another region, so that it outlives a region's outage; in a VPC of
# its own, as a VPC lives in one region.
resource "digitalocean_vpc" "backup" {
  count       = local.backup_count
  name        = "${var.name}-backup-vpc"
  region      = var.backup_region
  ip_range    = var.backup_vpc_cidr
  description = "ccmirror: the backup cluster (bk-1), peered with ${var.name}-vpc"

  lifecycle {
    precondition {
      condition     = var.backup_region != var.region
      error_message = "backup_region: a region other than region (${var.region}): a backup in the same region does not outlive its outage."
    }
    precondition {
      condition     = !local.vpcs_overlap
      error_message = "backup_vpc_cidr: ${var.backup_vpc_cidr} overlaps vpc_cidr (${var.vpc_cidr}); a peering routes between two distinct ranges only."
    }
  }
}

# The two VPCs' private addresses reach each other: bk-1 pulls from the main filers (8888,
# 18888) and db-1 reads bk-1's gateway and filer, each open to those role tags only
# (firewall.tf). Limits: DigitalOcean adds a peering's routes only to droplets created in a
# VPC that is already peered (hence the core droplets' depends_on): a droplet made before it,
# as on a site that sets backup_region later, must have its networking restarted
# (DigitalOcean's "update peering routes"). Not in BLR1; the two ranges must not overlap
# (checked on the backup VPC); it joins these two VPCs only (not transitive). Cost: no price
# for the peering itself in DigitalOcean's VPC pages, which say private traffic does not count
# against the transfer allowance but say nothing of traffic between regions over a peering:
# check the pricing before the first copy, which moves the whole store across regions once.
resource "digitalocean_vpc_peering" "backup" {
  count   = local.backup_count
  name    = "${var.name}-backup-peering"
  vpc_ids = [digitalocean_vpc.core.id, digitalocean_vpc.backup[0].id]
}

# bk-1: its name is the bk-* id salt/top.sls gives the backup role. Made after the peering,
# so that DigitalOcean gives it the peering's routes.
resource "digitalocean_droplet" "backup" {
  count      = local.backup_count
  name       = "bk-${count.index + 1}"
  region     = var.backup_region
  size       = var.backup_size
  image      = var.image
  vpc_uuid   = digitalocean_vpc.backup[0].id
  ssh_keys   = var.ssh_key_fingerprints
  monitoring = true
  ipv6       = false
  tags       = [digitalocean_tag.project.name, digitalocean_tag.role["backup"].name]
  depends_on = [digitalocean_vpc_peering.backup]

  lifecycle {
    ignore_changes = [image, ssh_keys]
  }
}

# bk-1's volume: the backup's copies, which it never deletes. As a storage droplet's, it
# outlives its droplet (a rebuilt bk-1 gets the same one), hence prevent_destroy: clearing
# backup_region fails the plan instead of deleting the backup.
resource "digitalocean_volume" "backup" {
  count                   = local.backup_count
  name                    = "${var.name}-bk-${count.index + 1}"
  region                  = var.backup_region
  size                    = var.backup_volume_gb
  initial_filesystem_type = "ext4"
  description             = "ccmirror: the backup cluster's SeaweedFS data on bk-${count.index + 1} (at most 16 TiB per volume)"
  tags                    = [digitalocean_tag.project.name]

  lifecycle {
    prevent_destroy = true
  }
}

resource "digitalocean_volume_attachment" "backup" {
  count      = local.backup_count
  droplet_id = digitalocean_droplet.backup[count.index].id
  volume_id  = digitalocean_volume.backup[count.index].id
}
