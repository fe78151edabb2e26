# Cloud firewalls, by role tag. Inbound, nothing is open to the internet, nor a service to
# the whole VPC: each port is open to the role tags (DigitalOcean's source_tags) of the
# droplets that use it, so a compromised downloader cannot reach MariaDB nor a harvester the
# storage. SSH on port 22 of the core (bk-1 included) only from var.admin_cidrs (no rule at
# all when it is empty); the fleet's SSH from the VPC (the master as the bastion). Outbound
# is open: the core installs Debian packages and the fleet fetches from Flickr's API and
# image hosts, whose addresses are not fixed.

locals {
  outbound_anywhere = ["0.0.0.0/0", "::/0"]
  # DigitalOcean applies a firewall to 5 tags at most: every role's but the backup's (five
  # with the default fleet roles); bk-1's own firewall has the same ICMP and outbound rules.
  every_role_tags = [for role, tag in digitalocean_tag.role : tag.name if role != "backup"]
}

# Salt: every minion, core or fleet, connects to the master's publish and return ports.
resource "digitalocean_firewall" "master" {
  name        = "${var.name}-master"
  droplet_ids = [digitalocean_droplet.master.id]

  inbound_rule {
    protocol    = "tcp"
    port_range  = local.salt_ports
    source_tags = values(digitalocean_tag.role)[*].name
  }
}

resource "digitalocean_firewall" "db" {
  name        = "${var.name}-db"
  droplet_ids = [digitalocean_droplet.db.id]

  # MariaDB: the harvesters' writes, the db droplet's own programs (migrate, reconcile, the
  # audit), the master's, and SeaweedFS's filers (their metadata store, database seaweedfs).
  inbound_rule {
    protocol   = "tcp"
    port_range = tostring(local.mariadb_port)
    source_tags = [
      digitalocean_tag.role["db"].name,
      digitalocean_tag.role["harvester"].name,
      digitalocean_tag.role["master"].name,
      digitalocean_tag.role["storage"].name,
    ]
  }

  # The queue service: the downloaders' leases and reports, and the master's status reads.
  inbound_rule {
    protocol   = "tcp"
    port_range = tostring(var.queue_port)
    source_tags = [
      digitalocean_tag.role["downloader"].name,
      digitalocean_tag.role["master"].name,
    ]
  }
}

# SeaweedFS on the st-* droplets. By tag, not by droplet id: a storage droplet that
# `fleet.up role=storage` adds is covered from its first boot. Clients speak S3 only; the
# cluster's own ports (masters' raft, volume replication, filer) are open between storage
# droplets alone. The runners' `weed shell` (storage.status, storage.repair) runs on a
# storage minion through Salt, not on the master: volume.fix.replication has the shell
# itself call each volume server's gRPC port, which the master then never needs.
resource "digitalocean_firewall" "storage" {
  name = "${var.name}-storage"
  tags = [digitalocean_tag.role["storage"].name]

  # The S3 gateway: the downloaders' pushes (each its own write-only identity), db-1's
  # storage audit (its audit key lists the bucket and restores a version by copying it) and
  # the master's admin key (bucket setup).
  inbound_rule {
    protocol   = "tcp"
    port_range = tostring(local.s3_gateway_port)
    source_tags = [
      digitalocean_tag.role["downloader"].name,
      digitalocean_tag.role["db"].name,
      digitalocean_tag.role["master"].name,
    ]
  }

  # Masters (HTTP and gRPC): raft between masters, volume servers' heartbeats, the filers'
  # and S3 gateways' lookups.
  inbound_rule {
    protocol    = "tcp"
    port_range  = tostring(local.weed_master_port)
    source_tags = [digitalocean_tag.role["storage"].name]
  }

  inbound_rule {
    protocol    = "tcp"
    port_range  = tostring(local.weed_master_grpc_port)
    source_tags = [digitalocean_tag.role["storage"].name]
  }

  # Volume servers (HTTP and gRPC): the filers' reads and writes, replication to the second
  # copy, volume copies by fix.replication and balance.
  inbound_rule {
    protocol    = "tcp"
    port_range  = tostring(local.weed_volume_port)
    source_tags = [digitalocean_tag.role["storage"].name]
  }

  inbound_rule {
    protocol    = "tcp"
    port_range  = tostring(local.weed_volume_grpc_port)
    source_tags = [digitalocean_tag.role["storage"].name]
  }

  # Filers (HTTP and gRPC): the S3 gateways' metadata, `weed shell` on a storage minion, and
  # the backup cluster's `weed filer.backup` (bk-1, over the VPC peering), which follows the
  # filer's metadata on gRPC and reads the photos through it (-filerProxy): it never needs a
  # volume server's port.
  inbound_rule {
    protocol   = "tcp"
    port_range = tostring(local.weed_filer_port)
    source_tags = [
      digitalocean_tag.role["storage"].name,
      digitalocean_tag.role["backup"].name,
    ]
  }

  inbound_rule {
    protocol   = "tcp"
    port_range = tostring(local.weed_filer_grpc_port)
    source_tags = [
      digitalocean_tag.role["storage"].name,
      digitalocean_tag.role["backup"].name,
    ]
  }
}

# The backup cluster (bk-1, backup_region only), a one-node SeaweedFS of its own, by its role
# tag as the storage droplets are. db-1 reads it over the VPC peering: its gateway (the
# backup reader's key: the lag, restore-photos) and its filer's HTTP listing (the copies'
# keys, which its S3 listing hides). Its master, volume server and filer gRPC serve bk-1
# alone, and weed filer.backup's sink writes to its gateway from bk-1 itself; traffic from a
# droplet to its own address never reaches a cloud firewall, so these rules name the backup
# tag only to say whose ports they are. Nothing on the main site writes to it.
resource "digitalocean_firewall" "backup" {
  count = local.backup_count
  name  = "${var.name}-backup"
  tags  = [digitalocean_tag.role["backup"].name]

  inbound_rule {
    protocol    = "tcp"
    port_range  = tostring(local.s3_gateway_port)
    source_tags = [digitalocean_tag.role["db"].name]
  }

  inbound_rule {
    protocol   = "tcp"
    port_range = tostring(local.weed_filer_port)
    source_tags = [
      digitalocean_tag.role["db"].name,
      digitalocean_tag.role["backup"].name,
    ]
  }

  inbound_rule {
    protocol    = "tcp"
    port_range  = tostring(local.weed_master_port)
    source_tags = [digitalocean_tag.role["backup"].name]
  }

  inbound_rule {
    protocol    = "tcp"
    port_range  = tostring(local.weed_master_grpc_port)
    source_tags = [digitalocean_tag.role["backup"].name]
  }

  inbound_rule {
    protocol    = "tcp"
    port_range  = tostring(local.weed_volume_port)
    source_tags = [digitalocean_tag.role["backup"].name]
  }

  inbound_rule {
    protocol    = "tcp"
    port_range  = tostring(local.weed_volume_grpc_port)
    source_tags = [digitalocean_tag.role["backup"].name]
  }

  inbound_rule {
    protocol    = "tcp"
    port_range  = tostring(local.weed_filer_grpc_port)
    source_tags = [digitalocean_tag.role["backup"].name]
  }

  # What every_role gives the other droplets: ping from the core's VPC, and outbound open
  # (Debian packages, the master's Salt ports, the main filers).
  inbound_rule {
    protocol         = "icmp"
    source_addresses = [digitalocean_vpc.core.ip_range]
  }

  outbound_rule {
    protocol              = "tcp"
    port_range            = "1-65535"
    destination_addresses = local.outbound_anywhere
  }

  outbound_rule {
    protocol              = "udp"
    port_range            = "1-65535"
    destination_addresses = local.outbound_anywhere
  }

  outbound_rule {
    protocol              = "icmp"
    destination_addresses = local.outbound_anywhere
  }
}

# The downloader and harvester droplets the master makes at run time carry a role tag; this
# firewall follows the tags, so a new droplet is covered from its first boot. They serve
# nothing: SSH only from inside the VPC (the master as the bastion).
resource "digitalocean_firewall" "fleet" {
  name = "${var.name}-fleet"
  tags = [for role in var.fleet_roles : digitalocean_tag.role[role].name]

  inbound_rule {
    protocol         = "tcp"
    port_range       = "22"
    source_addresses = [digitalocean_vpc.core.ip_range]
  }
}

# What every droplet of the project has, core or fleet (DigitalOcean applies the union of a
# droplet's firewalls): ping from inside the VPC, and outbound open. bk-1 has them from its
# own firewall (local.every_role_tags: 5 tags at most per firewall).
resource "digitalocean_firewall" "every_role" {
  name = "${var.name}-every-role"
  tags = local.every_role_tags

  inbound_rule {
    protocol         = "icmp"
    source_addresses = [digitalocean_vpc.core.ip_range]
  }

  outbound_rule {
    protocol              = "tcp"
    port_range            = "1-65535"
    destination_addresses = local.outbound_anywhere
  }

  outbound_rule {
    protocol              = "udp"
    port_range            = "1-65535"
    destination_addresses = local.outbound_anywhere
  }

  outbound_rule {
    protocol              = "icmp"
    destination_addresses = local.outbound_anywhere
  }
}

# SSH on the core's droplets, only from var.admin_cidrs (no firewall at all when it is empty).
resource "digitalocean_firewall" "core_admin_ssh" {
  count = length(var.admin_cidrs) > 0 ? 1 : 0
  name  = "${var.name}-core-admin-ssh"
  tags  = [for role in local.core_roles : digitalocean_tag.role[role].name]

  inbound_rule {
    protocol         = "tcp"
    port_range       = "22"
    source_addresses = var.admin_cidrs
  }
}
