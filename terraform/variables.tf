variable "name" {
  description = "Prefix of every resource's name, and the project's tag (lowercase letters, digits, '-')."
  type        = string
  default     = "ccmirror"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,19}$", var.name))
    error_message = "name: a lowercase letter, then 1-19 lowercase letters, digits or '-'."
  }
}

variable "region" {
  description = "DigitalOcean region slug for the VPC, the droplets, the volumes (a volume attaches only within its region) and the Spaces bucket (a region that offers Spaces, such as fra1, ams3, nyc3, sgp1)."
  type        = string
  default     = "fra1"

  validation {
    condition     = can(regex("^[a-z]{3}[0-9]$", var.region))
    error_message = "region: a region slug such as fra1, nyc3 or ams3."
  }
}

variable "vpc_cidr" {
  description = "Private range of the VPC: the droplets' private addresses, with room for the downloader fleet (each service is open to role tags inside it, never to all of it)."
  type        = string
  default     = "10.20.0.0/20"

  validation {
    condition = (
      can(cidrhost(var.vpc_cidr, 0)) &&
      tonumber(split("/", var.vpc_cidr)[1]) >= 16 &&
      tonumber(split("/", var.vpc_cidr)[1]) <= 24 &&
      can(regex("^(10\\.|172\\.(1[6-9]|2[0-9]|3[01])\\.|192\\.168\\.)", var.vpc_cidr))
    )
    error_message = "vpc_cidr: an RFC 1918 range from /16 to /24, e.g. 10.20.0.0/20."
  }
}

variable "admin_cidrs" {
  description = "Addresses (CIDR) from which operators may SSH to the master, db and storage droplets. Empty: no SSH from outside (the DigitalOcean console still works). Never the whole internet."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for cidr in var.admin_cidrs : can(cidrhost(cidr, 0)) && !contains(["0.0.0.0/0", "::/0"], cidr)
    ])
    error_message = "admin_cidrs: CIDR blocks such as 203.0.113.4/32; 0.0.0.0/0 and ::/0 are refused."
  }
}

variable "ssh_key_fingerprints" {
  description = "MD5 fingerprints (aa:bb:...) of SSH keys already on the DigitalOcean account, installed for root on the core droplets. Public keys only: nothing secret."
  type        = list(string)

  validation {
    condition = length(var.ssh_key_fingerprints) > 0 && alltrue([
      for fingerprint in var.ssh_key_fingerprints : can(regex("^([0-9a-f]{2}:){15}[0-9a-f]{2}$", fingerprint))
    ])
    error_message = "ssh_key_fingerprints: at least one MD5 fingerprint, 16 lowercase hex pairs joined by ':'."
  }
}

variable "image" {
  description = "Image slug of the core droplets (the Salt states target Debian 12)."
  type        = string
  default     = "debian-12-x64"
}

variable "master_name" {
  description = "Droplet name, hostname and minion id of the salt master (salt/top.sls: master* gets the master role only)."
  type        = string
  default     = "master"

  validation {
    condition     = can(regex("^master[a-z0-9-]{0,24}$", var.master_name))
    error_message = "master_name: 'master', or 'master' then up to 24 lowercase letters, digits or '-' (the master* target)."
  }
}

variable "master_size" {
  description = "Size slug of the salt master (Salt, the wheelhouse build, the runners)."
  type        = string
  default     = "s-2vcpu-4gb"
}

variable "master_backups" {
  description = "Weekly DigitalOcean backups of the salt master, whose disk holds the private pillar root and the minions' keys."
  type        = bool
  default     = true
}

variable "db_name" {
  description = "Droplet name, hostname and minion id of the database droplet (salt/top.sls: db-* gets db and queue; the runners look for the database on db-* only)."
  type        = string
  default     = "db-1"

  validation {
    condition     = can(regex("^db-[a-z0-9-]{1,27}$", var.db_name))
    error_message = "db_name: must start with 'db-' (the db and queue roles' target), 30 characters at most."
  }
}

variable "db_size" {
  description = "Size slug of the database droplet: MariaDB's buffer pool (pillar db:settings) and the queue service share it."
  type        = string
  default     = "s-4vcpu-8gb"
}

variable "db_backups" {
  description = "Weekly DigitalOcean backups of the database droplet, whose disk holds the catalog and the download state."
  type        = bool
  default     = true
}

variable "storage_backend" {
  description = "Where photos and manifests are stored: \"seaweedfs\" (storage_count st-* droplets, each with its volume, run SeaweedFS: replication 001, object lock, per-downloader write-only identities) or \"spaces\" (a versioned DigitalOcean Spaces bucket and no storage droplet; see README.md for what it lacks)."
  type        = string
  default     = "seaweedfs"

  validation {
    condition     = contains(["seaweedfs", "spaces"], var.storage_backend)
    error_message = "storage_backend: \"seaweedfs\" or \"spaces\"."
  }
}

variable "storage_count" {
  description = "Number of storage droplets st-1..st-N when storage_backend is seaweedfs (ignored for spaces): a volume server, filer and S3 gateway on each, masters on the first three (one when fewer than three). Replication 001 (two copies on two servers) needs two or more; one is a test site with replication 000."
  type        = number
  default     = 3

  validation {
    condition     = var.storage_count >= 1 && var.storage_count <= 100 && floor(var.storage_count) == var.storage_count
    error_message = "storage_count: a whole number from 1 to 100."
  }
}

variable "storage_size" {
  description = "Size slug of each storage droplet (SeaweedFS's volume server, filer and S3 gateway; the data lives on its volume)."
  type        = string
  default     = "s-2vcpu-4gb"
}

variable "storage_volume_gb" {
  description = "Size in GiB of each storage droplet's block storage volume (SeaweedFS's volume data; grow it later, never shrink). DigitalOcean caps a volume at 16 TiB (16384 GiB): the store grows by adding droplets (storage_count), not by one bigger disk."
  type        = number
  default     = 1000

  validation {
    condition     = var.storage_volume_gb >= 1 && var.storage_volume_gb <= 16384 && floor(var.storage_volume_gb) == var.storage_volume_gb
    error_message = "storage_volume_gb: a whole number from 1 to 16384 (16 TiB, DigitalOcean's largest volume)."
  }
}

variable "storage_bucket" {
  description = "The S3 bucket of images and manifests (pillar site:storage_bucket), which the gateway, the downloaders' keys and the audit all take. SeaweedFS: the cluster's own name, `images` (the storage formula's default) unless you choose otherwise. Spaces: choose your own, as a Spaces bucket's name must be unique in its region among all of DigitalOcean's customers. No '.' (Spaces' TLS wildcard does not match it)."
  type        = string
  default     = "images"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.storage_bucket))
    error_message = "storage_bucket: 3-63 lowercase letters, digits or '-', starting and ending with a letter or digit."
  }
}

variable "backup_region" {
  description = "DigitalOcean region slug of the backup cluster (bk-1: SeaweedFS of its own that `weed filer.backup` fills from the main filers, never sending a delete), in a VPC of its own peered with the core's. Another region than `region`, so that the backup outlives a region's outage (checked); \"\": no backup cluster."
  type        = string
  default     = "ams3"

  validation {
    condition     = var.backup_region == "" || can(regex("^[a-z]{3}[0-9]$", var.backup_region))
    error_message = "backup_region: a region slug such as ams3 or nyc3 (another than region), or \"\" for no backup cluster."
  }
}

variable "backup_vpc_cidr" {
  description = "Private range of the backup cluster's VPC (backup_region only): it must not overlap vpc_cidr (checked), as the peering routes between the two."
  type        = string
  default     = "10.20.16.0/24"

  validation {
    condition = (
      can(cidrhost(var.backup_vpc_cidr, 0)) &&
      tonumber(split("/", var.backup_vpc_cidr)[1]) >= 16 &&
      tonumber(split("/", var.backup_vpc_cidr)[1]) <= 24 &&
      can(regex("^(10\\.|172\\.(1[6-9]|2[0-9]|3[01])\\.|192\\.168\\.)", var.backup_vpc_cidr))
    )
    error_message = "backup_vpc_cidr: an RFC 1918 range from /16 to /24, e.g. 10.20.16.0/24."
  }
}

variable "backup_size" {
  description = "Size slug of the backup droplet bk-1 (one SeaweedFS master, volume server, filer with its names in leveldb2, S3 gateway, and weed filer.backup; the data lives on its volume)."
  type        = string
  default     = "s-2vcpu-4gb"
}

variable "backup_volume_gb" {
  description = "Size in GiB of bk-1's block storage volume: one copy of every photo the main cluster stores (which keeps two), and every version it ever had, as the backup never deletes. Grow it, never shrink; DigitalOcean caps a volume at 16 TiB (16384 GiB)."
  type        = number
  default     = 2000

  validation {
    condition     = var.backup_volume_gb >= 1 && var.backup_volume_gb <= 16384 && floor(var.backup_volume_gb) == var.backup_volume_gb
    error_message = "backup_volume_gb: a whole number from 1 to 16384 (16 TiB, DigitalOcean's largest volume)."
  }
}

variable "queue_port" {
  description = "TCP port of the queue service (harvester serve) on the database droplet; pillar site:queue_port."
  type        = number
  default     = 8700

  validation {
    condition     = var.queue_port >= 1024 && var.queue_port <= 65535 && !contains([3306, 4505, 4506], var.queue_port)
    error_message = "queue_port: an unprivileged port (1024-65535) other than MariaDB's and Salt's."
  }
}

variable "fleet_roles" {
  description = "Roles of the droplets the master makes and removes at run time (salt-run fleet.up); each gets the tag <name>-<role>, which its firewall follows."
  type        = list(string)
  default     = ["downloader", "harvester"]

  validation {
    condition = alltrue(concat(
      [for role in var.fleet_roles : can(regex("^[a-z][a-z0-9]{1,19}$", role)) && !contains(["master", "db", "storage", "backup"], role)],
      [contains(var.fleet_roles, "downloader"), contains(var.fleet_roles, "harvester")],
    ))
    error_message = "fleet_roles: lowercase words, downloader and harvester among them (the firewalls name them); master, db, storage and backup are the core's."
  }
}

variable "environment" {
  description = "The DigitalOcean project's environment."
  type        = string
  default     = "Production"

  validation {
    condition     = contains(["Development", "Staging", "Production"], var.environment)
    error_message = "environment: Development, Staging or Production."
  }
}
