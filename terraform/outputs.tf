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
  description = "Minion id (droplet name and hostname) => private address of each core droplet. salt/top.sls gives each its roles by id: master the master role only, db-* db and queue, st-* storage."
  value = {
    (digitalocean_droplet.master.name)  = digitalocean_droplet.master.ipv4_address_private
    (digitalocean_droplet.db.name)      = digitalocean_droplet.db.ipv4_address_private
    (digitalocean_droplet.storage.name) = digitalocean_droplet.storage.ipv4_address_private
  }
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

output "storage_private_ip" {
  description = "Private address of the storage droplet (pillar site:storage_host)."
  value       = digitalocean_droplet.storage.ipv4_address_private
}

output "storage_volume_id" {
  description = "Id of the block storage volume holding the mirror."
  value       = digitalocean_volume.storage.id
}

output "storage_volume_device" {
  description = "Device path of the volume on the storage droplet (DigitalOcean names it by volume name)."
  value       = "/dev/disk/by-id/scsi-0DO_Volume_${digitalocean_volume.storage.name}"
}

output "project_id" {
  description = "The DigitalOcean project: fleet.up may assign the droplets it makes to it."
  value       = digitalocean_project.ccmirror.id
}

output "fleet_tags" {
  description = "Tag per fleet role (role => tag name): fleet.up tags each droplet with its role's tag and the project tag, and the fleet firewall follows them."
  value       = merge({ for role in var.fleet_roles : role => digitalocean_tag.role[role].name }, { project = digitalocean_tag.project.name })
}

output "site_pillar" {
  description = "The site facts of the master's private pillar (site.sls), from this core."
  value = {
    site = {
      db_host               = digitalocean_droplet.db.ipv4_address_private
      master_host           = digitalocean_droplet.master.ipv4_address_private # reads the queue's status
      db_port               = local.mariadb_port
      queue_port            = var.queue_port
      queue_url             = "http://${digitalocean_droplet.db.ipv4_address_private}:${var.queue_port}"
      storage_host          = digitalocean_droplet.storage.ipv4_address_private
      storage_port          = var.storage_rsync_port
      private_network       = digitalocean_vpc.core.ip_range
      storage_volume_id     = digitalocean_volume.storage.id
      storage_volume_device = "/dev/disk/by-id/scsi-0DO_Volume_${digitalocean_volume.storage.name}"
      vpc_id                = digitalocean_vpc.core.id
      region                = var.region
      fleet_tags            = merge({ for role in var.fleet_roles : role => digitalocean_tag.role[role].name }, { project = digitalocean_tag.project.name })
    }
  }
}
