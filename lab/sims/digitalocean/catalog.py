"""What the DigitalOcean simulator offers: regions, sizes and images, in the API's shapes.

A small, fixed slice of the real catalog (slugs, memory, prices and region names as
DigitalOcean lists them), enough to create droplets with the slugs an operator would use and
to refuse the ones DigitalOcean refuses: an unknown slug, or a size a region does not sell.
"""

from __future__ import annotations

from dataclasses import dataclass

REGION_FEATURES = [
    "private_networking",
    "backups",
    "ipv6",
    "metadata",
    "install_agent",
    "storage",
    "image_transfer",
]


@dataclass(frozen=True)
class Size:
    slug: str
    memory: int  # MiB
    vcpus: int
    disk: int  # GB
    transfer: float  # TB a month
    price_monthly: float
    price_hourly: float
    description: str


SIZES = (
    Size("s-1vcpu-512mb-10gb", 512, 1, 10, 0.5, 4.0, 0.00595, "Basic"),
    Size("s-1vcpu-1gb", 1024, 1, 25, 1.0, 6.0, 0.00893, "Basic"),
    Size("s-1vcpu-2gb", 2048, 1, 50, 2.0, 12.0, 0.01786, "Basic"),
    Size("s-2vcpu-2gb", 2048, 2, 60, 3.0, 18.0, 0.02679, "Basic"),
    Size("s-2vcpu-4gb", 4096, 2, 80, 4.0, 24.0, 0.03571, "Basic"),
    Size("s-4vcpu-8gb", 8192, 4, 160, 5.0, 48.0, 0.07143, "Basic"),
    Size("s-8vcpu-16gb", 16384, 8, 320, 6.0, 96.0, 0.14286, "Basic"),
    Size("c-2", 4096, 2, 25, 4.0, 42.0, 0.0625, "CPU-Optimized"),
    Size("c-4", 8192, 4, 50, 5.0, 84.0, 0.125, "CPU-Optimized"),
    Size("m-2vcpu-16gb", 16384, 2, 50, 4.0, 84.0, 0.125, "Memory-Optimized"),
)

# The General/CPU/Memory-optimized sizes are not sold everywhere: a real source of 422s.
SMALL_REGIONS = {"blr1", "syd1"}
BASIC_ONLY = tuple(size.slug for size in SIZES if size.description == "Basic")

REGIONS = {
    "nyc1": "New York 1",
    "nyc3": "New York 3",
    "sfo3": "San Francisco 3",
    "ams3": "Amsterdam 3",
    "fra1": "Frankfurt 1",
    "lon1": "London 1",
    "sgp1": "Singapore 1",
    "tor1": "Toronto 1",
    "blr1": "Bangalore 1",
    "syd1": "Sydney 1",
}

# The default VPC DigitalOcean made in each region: (second octet, third octet) of a /20.
DEFAULT_VPC_RANGES = {
    "nyc1": (10, 116),
    "nyc3": (10, 108),
    "sfo3": (10, 124),
    "ams3": (10, 110),
    "fra1": (10, 114),
    "lon1": (10, 106),
    "sgp1": (10, 104),
    "tor1": (10, 118),
    "blr1": (10, 122),
    "syd1": (10, 126),
}


@dataclass(frozen=True)
class Image:
    id: int
    slug: str
    name: str
    distribution: str
    description: str
    created_at: str
    size_gigabytes: float
    min_disk_size: int = 15


IMAGES = (
    Image(
        129211873,
        "debian-12-x64",
        "12 x64",
        "Debian",
        "Debian 12 (bookworm)",
        "2023-06-11T17:16:12Z",
        0.63,
    ),
    Image(
        106433672,
        "debian-11-x64",
        "11 x64",
        "Debian",
        "Debian 11 (bullseye)",
        "2022-04-13T18:48:26Z",
        0.67,
        10,
    ),
    Image(
        129211877,
        "ubuntu-22-04-x64",
        "22.04 (LTS) x64",
        "Ubuntu",
        "Ubuntu 22.04 (LTS) x64",
        "2023-04-28T18:22:53Z",
        2.36,
        7,
    ),
    Image(
        160232537,
        "ubuntu-24-04-x64",
        "24.04 (LTS) x64",
        "Ubuntu",
        "Ubuntu 24.04 (LTS) x64",
        "2024-07-23T17:01:44Z",
        2.34,
        10,
    ),
)


def size_by_slug(slug: object) -> Size | None:
    return next((size for size in SIZES if size.slug == slug), None)


def image_by_id_or_slug(value: object) -> Image | None:
    """Droplets are created from an image slug or its numeric id (an int or its digits)."""
    for image in IMAGES:
        if value == image.slug or (str(value).isdigit() and int(str(value)) == image.id):
            return image
    return None


def sizes_in(region: str) -> list[str]:
    return list(BASIC_ONLY if region in SMALL_REGIONS else (size.slug for size in SIZES))


def regions_selling(size: str) -> list[str]:
    return [slug for slug in REGIONS if size in sizes_in(slug)]


def region_json(slug: str) -> dict:
    return {
        "name": REGIONS[slug],
        "slug": slug,
        "features": list(REGION_FEATURES),
        "available": True,
        "sizes": sizes_in(slug),
    }


def size_json(size: Size) -> dict:
    return {
        "slug": size.slug,
        "memory": size.memory,
        "vcpus": size.vcpus,
        "disk": size.disk,
        "transfer": size.transfer,
        "price_monthly": size.price_monthly,
        "price_hourly": size.price_hourly,
        "regions": regions_selling(size.slug),
        "available": True,
        "description": size.description,
    }


def image_json(image: Image) -> dict:
    return {
        "id": image.id,
        "name": image.name,
        "distribution": image.distribution,
        "slug": image.slug,
        "public": True,
        "regions": list(REGIONS),
        "created_at": image.created_at,
        "min_disk_size": image.min_disk_size,
        "type": "base",
        "size_gigabytes": image.size_gigabytes,
        "description": image.description,
        "tags": [],
        "status": "available",
    }
