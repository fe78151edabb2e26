# Cloud firewalls, by role tag. Inbound, nothing is open to the internet, nor a service to
# the whole VPC: each port is open to the role tags (DigitalOcean's source_tags) of the
# droplets that use it, so a compromised downloader cannot reach MariaDB nor a harvester the
# storage. SSH on port 22 of the core only from var.admin_cidrs (no rule at all when it is
# empty); the fleet's SSH from the VPC (the master as the bastion). Outbound is open: the core
# installs Debian packages and the fleet fetches from Flickr's API and image hosts, whose
# addresses are not fixed.

locals {
  outbound_anywhere = ["0.0.0.0/0", "::/0"]
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
  # audit) and the master's.
  inbound_rule {
    protocol   = "tcp"
    port_range = tostring(local.mariadb_port)
    source_tags = [
      digitalocean_tag.role["db"].name,
      digitalocean_tag.role["harvester"].name,
      digitalocean_tag.role["master"].name,
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

resource "digitalocean_firewall" "storage" {
  name        = "${var.name}-storage"
  droplet_ids = [digitalocean_droplet.storage.id]

  # rsync over SSH (the write-only rrsync sshd): the downloaders' pushes, and an operator's
  # check from the master.
  inbound_rule {
    protocol   = "tcp"
    port_range = tostring(var.storage_rsync_port)
    source_tags = [
      digitalocean_tag.role["downloader"].name,
      digitalocean_tag.role["master"].name,
    ]
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
# droplet's firewalls): ping from inside the VPC, and outbound open.
resource "digitalocean_firewall" "every_role" {
  name = "${var.name}-every-role"
  tags = values(digitalocean_tag.role)[*].name

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
