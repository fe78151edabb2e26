# What the master's pillar needs. `site_pillar` has the shape of the private pillar root's
# site.sls (pillar/README.md), so an operator writes it with
#   terraform output -json site_pillar > /srv/ccmirror-private/site.sls
# (JSON is YAML). No output is sensitive: addresses, ids and ports only.

output "vpc_id" {
  description = "The VPC's id: fleet.up creates downloader and harvester droplets in it (vpc_uuid)."
  value       = digitalocean_vpc.core.id
}

output "vpc_cidr" {
  description = "The VPC's private range (pillar site:private_network; database users may connect only from it)."
  value       = digitalocean_vpc.core.ip_range
}

output "region" {
  description = "Region of the core: fleet droplets must be created in it to join the VPC."
  value       = var.region
}

output "core_minions" {
  description = "Minion id (droplet name and hostname) => private address of each core droplet: master, db-1, every st-* storage droplet and the backup cluster's bk-1. salt/top.sls gives each its roles by id: master the master role only, db-* db and queue, st-* storage, bk-* backup."
  value       = { for droplet in local.core_droplets : droplet.name => droplet.ipv4_address_private }
}

output "master_private_ip" {
  description = "Private address of the salt master: every minion's `master:` setting."
  value       = digitalocean_droplet.master.ipv4_address_private
}

output "master_public_ip" {
  description = "Public address of the salt master, for operators' SSH from admin_cidrs."
  value       = digitalocean_droplet.master.ipv4_address
}

output "db_private_ip" {
  description = "Private address of the db droplet: MariaDB and the queue service (pillar site:db_host)."
  value       = digitalocean_droplet.db.ipv4_address_private
}

output "storage_nodes" {
  description = "Minion id => private address of each storage droplet st-1..st-N (none with Spaces)."
  value       = local.storage_nodes
}

output "storage_volumes" {
  description = "Minion id => the device path of its volume on that storage droplet (DigitalOcean names the device by volume name); none with Spaces."
  value       = local.storage_volumes
}

output "backup_nodes" {
  description = "Minion id => private address of the backup cluster's droplet bk-1, in backup_region's VPC (reached over the peering); none when backup_region is \"\"."
  value       = local.backup_nodes
}

output "backup_volumes" {
  description = "Minion id => the device path of its volume on the backup droplet (as storage_volumes); none without a backup cluster."
  value       = local.backup_volumes
}

output "storage_endpoint" {
  description = "The S3 endpoint of the store: st-1's SeaweedFS S3 gateway, or the Spaces region's endpoint."
  value       = local.storage_endpoint
}

output "project_id" {
  description = "The DigitalOcean project: fleet.up may assign the droplets it makes to it."
  value       = digitalocean_project.ccmirror.id
}

output "fleet_tags" {
  description = "Tag per role the master makes droplets of (role => tag name): the fleet roles, and storage for `fleet.up role=storage`. fleet.up tags each droplet with its role's tag and the project tag, and the firewalls follow them."
  value       = local.fleet_tags
}

output "site_pillar" {
  description = "The site facts of the master's private pillar (site.sls), from this core."
  value = {
    site = {
      db_host         = digitalocean_droplet.db.ipv4_address_private
      master_host     = digitalocean_droplet.master.ipv4_address_private # reads the queue's status
      db_port         = local.mariadb_port
      queue_port      = var.queue_port
      queue_url       = "http://${digitalocean_droplet.db.ipv4_address_private}:${var.queue_port}"
      private_network = digitalocean_vpc.core.ip_range
      vpc_id          = digitalocean_vpc.core.id
      region          = var.region
      fleet_tags      = local.fleet_tags

      # The object store, as the downloaders, the audit and the storage states read it.
      storage_backend  = var.storage_backend
      storage_endpoint = local.storage_endpoint
      storage_bucket   = var.storage_bucket
      storage_region   = var.region
      storage_nodes    = local.storage_nodes
      storage_volumes  = local.storage_volumes
      storage_masters  = [for droplet in slice(digitalocean_droplet.storage, 0, local.storage_master_count) : droplet.name]

      # The backup cluster (salt/backup): bk-1 by id, its volume's device; empty maps without
      # one (backup_region ""), which the states and storage.status read as no backup.
      backup_nodes   = local.backup_nodes
      backup_volumes = local.backup_volumes

      # Read by today's states (the rsync-era storage and downloader config) until they move
      # to storage_endpoint: both name the store's S3 endpoint, st-1's gateway (or Spaces),
      # so the pillar they check stays complete. Remove them with those states.
      storage_host = local.storage_host
      storage_port = local.storage_port
    }
  }
}
