"""The DigitalOcean simulator's routes: each method and path of the API (and `/_sim/`) to
the operation of the account or catalog that answers it."""

from __future__ import annotations

import re
from collections.abc import Callable

from lab.sims.digitalocean import catalog
from lab.sims.digitalocean.api import DoSim, Request
from lab.sims.digitalocean.backends import MemoryBackend
from lab.sims.digitalocean.records import ApiError, not_found

Route = tuple[str, re.Pattern, Callable[["DoSim", Request], tuple[int, dict | None]]]


def r_account(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.cloud.account()


def r_regions(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return req.page(sim, [catalog.region_json(slug) for slug in catalog.REGIONS], "regions")


def r_sizes(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return req.page(sim, [catalog.size_json(size) for size in catalog.SIZES], "sizes")


def r_images(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return req.page(sim, [catalog.image_json(image) for image in catalog.IMAGES], "images")


def r_image(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    image = catalog.image_by_id_or_slug(req.arg(1))
    if image is None:
        raise not_found()
    return 200, {"image": catalog.image_json(image)}


def r_droplets(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    items = sim.cloud.list_droplets(req.query.get("tag_name"), req.query.get("name"))
    return req.page(sim, items, "droplets")


def r_create_droplets(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 202, sim.cloud.create_droplets(req.body, req.base_url)


def r_destroy_by_tag(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    sim.cloud.destroy_by_tag(req.query.get("tag_name"))
    return 204, None


def r_droplet(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.cloud.get_droplet(req.arg(1))


def r_destroy_droplet(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    sim.cloud.destroy_droplet(req.arg(1))
    return 204, None


def r_droplet_actions(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return req.page(sim, sim.cloud.list_actions(req.arg(1)), "actions")


def r_droplet_action_post(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 201, sim.cloud.droplet_action(req.arg(1), req.body)


def r_droplet_action(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.cloud.get_action(req.arg(2), droplet_id=req.arg(1))


def r_actions(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return req.page(sim, sim.cloud.list_actions(), "actions")


def r_action(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.cloud.get_action(req.arg(1))


def r_tags(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return req.page(sim, sim.cloud.list_tags(), "tags")


def r_create_tag(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 201, sim.cloud.create_tag(req.body)


def r_tag(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.cloud.get_tag(req.arg(1))


def r_delete_tag(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    sim.cloud.delete_tag(req.arg(1))
    return 204, None


def r_tag_resources(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    sim.cloud.tag_resources(req.arg(1), req.body, tag=req.method == "POST")
    return 204, None


def r_keys(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return req.page(sim, sim.cloud.list_keys(), "ssh_keys")


def r_create_key(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 201, sim.cloud.create_key(req.body)


def r_key(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.cloud.get_key(req.arg(1))


def r_rename_key(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.cloud.rename_key(req.arg(1), req.body)


def r_delete_key(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    sim.cloud.delete_key(req.arg(1))
    return 204, None


def r_vpcs(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return req.page(sim, sim.cloud.list_vpcs(), "vpcs")


def r_create_vpc(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 201, sim.cloud.create_vpc(req.body)


def r_vpc(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.cloud.get_vpc(req.arg(1))


def r_rename_vpc(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.cloud.rename_vpc(req.arg(1), req.body)


def r_delete_vpc(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    sim.cloud.delete_vpc(req.arg(1))
    return 204, None


def r_volumes(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    items = sim.cloud.list_volumes(req.query.get("name"), req.query.get("region"))
    return req.page(sim, items, "volumes")


def r_create_volume(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 201, sim.cloud.create_volume(req.body)


def r_delete_volume_by_name(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    sim.cloud.delete_volume_by_name(req.query.get("name"), req.query.get("region"))
    return 204, None


def r_volume(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.cloud.get_volume(req.arg(1))


def r_delete_volume(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    sim.cloud.delete_volume(req.arg(1))
    return 204, None


def r_volume_action_by_name(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 202, sim.cloud.volume_action(None, req.body)


def r_volume_action_post(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 202, sim.cloud.volume_action(req.arg(1), req.body)


def r_volume_actions(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return req.page(sim, sim.cloud.volume_actions(req.arg(1)), "actions")


def r_volume_action(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.cloud.volume_action_get(req.arg(1), req.arg(2))


def r_sim_machines(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    backend = sim.cloud.backend
    if not isinstance(backend, MemoryBackend):
        raise ApiError(404, "not_found", "only the memory backend keeps machine records")
    return 200, {"machines": backend.snapshot()}


def r_sim_control(sim: DoSim, req: Request) -> tuple[int, dict | None]:
    return 200, sim.control(req.body)


SEGMENT = r"([^/]+)"
ROUTES: list[Route] = [
    (method, re.compile(f"^{pattern}/?$"), handler)
    for method, pattern, handler in [
        ("GET", "/v2/account", r_account),
        ("GET", "/v2/regions", r_regions),
        ("GET", "/v2/sizes", r_sizes),
        ("GET", "/v2/images", r_images),
        ("GET", f"/v2/images/{SEGMENT}", r_image),
        ("GET", "/v2/droplets", r_droplets),
        ("POST", "/v2/droplets", r_create_droplets),
        ("DELETE", "/v2/droplets", r_destroy_by_tag),
        ("GET", r"/v2/droplets/(\d+)", r_droplet),
        ("DELETE", r"/v2/droplets/(\d+)", r_destroy_droplet),
        ("GET", r"/v2/droplets/(\d+)/actions", r_droplet_actions),
        ("POST", r"/v2/droplets/(\d+)/actions", r_droplet_action_post),
        ("GET", r"/v2/droplets/(\d+)/actions/(\d+)", r_droplet_action),
        ("GET", "/v2/actions", r_actions),
        ("GET", r"/v2/actions/(\d+)", r_action),
        ("GET", "/v2/tags", r_tags),
        ("POST", "/v2/tags", r_create_tag),
        ("GET", f"/v2/tags/{SEGMENT}", r_tag),
        ("DELETE", f"/v2/tags/{SEGMENT}", r_delete_tag),
        ("POST", f"/v2/tags/{SEGMENT}/resources", r_tag_resources),
        ("DELETE", f"/v2/tags/{SEGMENT}/resources", r_tag_resources),
        ("GET", "/v2/account/keys", r_keys),
        ("POST", "/v2/account/keys", r_create_key),
        ("GET", f"/v2/account/keys/{SEGMENT}", r_key),
        ("PUT", f"/v2/account/keys/{SEGMENT}", r_rename_key),
        ("DELETE", f"/v2/account/keys/{SEGMENT}", r_delete_key),
        ("GET", "/v2/vpcs", r_vpcs),
        ("POST", "/v2/vpcs", r_create_vpc),
        ("GET", f"/v2/vpcs/{SEGMENT}", r_vpc),
        ("PATCH", f"/v2/vpcs/{SEGMENT}", r_rename_vpc),
        ("PUT", f"/v2/vpcs/{SEGMENT}", r_rename_vpc),
        ("DELETE", f"/v2/vpcs/{SEGMENT}", r_delete_vpc),
        ("GET", "/v2/volumes", r_volumes),
        ("POST", "/v2/volumes", r_create_volume),
        ("DELETE", "/v2/volumes", r_delete_volume_by_name),
        ("POST", "/v2/volumes/actions", r_volume_action_by_name),
        ("GET", f"/v2/volumes/{SEGMENT}", r_volume),
        ("DELETE", f"/v2/volumes/{SEGMENT}", r_delete_volume),
        ("GET", f"/v2/volumes/{SEGMENT}/actions", r_volume_actions),
        ("POST", f"/v2/volumes/{SEGMENT}/actions", r_volume_action_post),
        ("GET", rf"/v2/volumes/{SEGMENT}/actions/(\d+)", r_volume_action),
        ("GET", "/_sim/machines", r_sim_machines),
        ("POST", "/_sim/control", r_sim_control),
    ]
]


def route(method: str, path: str) -> tuple[Callable, re.Match] | None:
    for route_method, pattern, handler in ROUTES:
        match = pattern.match(path)
        if match and route_method == method:
            return handler, match
    return None
