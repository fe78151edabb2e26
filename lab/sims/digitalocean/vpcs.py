"""The DigitalOcean simulator's VPCs: a default one per region (made on first use), others
on private ranges from /16 to /24 that overlap no other."""

from __future__ import annotations

import ipaddress
import time
import uuid

from lab.sims.digitalocean import catalog
from lab.sims.digitalocean.account import Account
from lab.sims.digitalocean.records import ApiError, Vpc, unprocessable
from lab.sims.digitalocean.validation import VPC_NAME


class VpcOps(Account):
    """/v2/vpcs."""

    def list_vpcs(self) -> list[dict]:
        with self.lock:
            return [vpc.json() for vpc in self.vpcs.values()]

    def get_vpc(self, vpc_id: str) -> dict:
        with self.lock:
            return {"vpc": self.find_vpc(vpc_id).json()}

    def create_vpc(self, body: dict) -> dict:
        with self.lock:
            name, region = body.get("name"), body.get("region")
            if not isinstance(name, str) or not VPC_NAME.match(name):
                raise unprocessable("name: letters, numbers and '-' (1 to 255)")
            if any(vpc.name == name for vpc in self.vpcs.values()):
                raise unprocessable(f"a VPC named {name} already exists")
            if region not in catalog.REGIONS:
                raise unprocessable("You specified an invalid region for VPC creation.")
            network = self.vpc_range(body.get("ip_range"))
            description = body.get("description") or ""
            vpc = Vpc(str(uuid.uuid4()), name, region, network, description, False, time.time())
            self.vpcs[vpc.id] = vpc
            return {"vpc": vpc.json()}

    def vpc_range(self, value: object) -> ipaddress.IPv4Network:
        """A private range from /16 to /24 that overlaps no other VPC; chosen when absent."""
        if value is None or value == "":
            for second in range(200, 256):
                candidate = ipaddress.IPv4Network(f"10.{second}.0.0/20")
                if not any(candidate.overlaps(v.network) for v in self.vpcs.values()):
                    return candidate
            raise unprocessable("no free ip_range left")
        try:
            network = ipaddress.IPv4Network(str(value))
        except ValueError:
            raise unprocessable(f"ip_range {value!r} is not a CIDR block") from None
        if not network.is_private or not 16 <= network.prefixlen <= 24:
            raise unprocessable("ip_range must be a private range from /16 to /24")
        for vpc in self.vpcs.values():
            if network.overlaps(vpc.network):
                raise unprocessable(f"ip_range {network} overlaps VPC {vpc.name}")
        return network

    def rename_vpc(self, vpc_id: str, body: dict) -> dict:
        with self.lock:
            vpc = self.find_vpc(vpc_id)
            name = body.get("name")
            if name is not None:
                if not isinstance(name, str) or not VPC_NAME.match(name):
                    raise unprocessable("name: letters, numbers and '-' (1 to 255)")
                vpc.name = name
            if isinstance(body.get("description"), str):
                vpc.description = body["description"]
            return {"vpc": vpc.json()}

    def delete_vpc(self, vpc_id: str) -> None:
        with self.lock:
            vpc = self.find_vpc(vpc_id)
            if vpc.default:
                raise ApiError(403, "forbidden", "Can not delete default VPC")
            if any(d.vpc is vpc for d in self.droplets.values()):
                raise ApiError(403, "forbidden", "Can not delete VPC with members")
            del self.vpcs[vpc_id]
