"""Salt execution module: who may write to storage, on a storage minion (`st-*`).

``apply`` renders the access the pillar gives the downloaders now (the S3 gateway's
identities on a SeaweedFS site, the rsync target's authorized keys on an rsync one) with the
one state that renders it, and makes it take effect (the gateway's reload); ``fleet.down``
and ``fleet.destroy`` call it on every storage droplet once a downloader's secrets are
forgotten, so that its key is refused at once. Standard library and Salt only, as
ccmirror_storage; a state run's failure is read by `_utils/fleet_minions.py`'s
``state_failure``, as the fleet runner reads its own (``__utils__``: saltutil.sync_all
brings `_utils/` to the minion with this module).
"""

from __future__ import annotations

import logging

import salt.utils.data

log = logging.getLogger(__name__)

__virtualname__ = "ccmirror_storage_access"
__load__ = ["apply", "reload_gateway"]
# Replaced by Salt's loader when it loads the module; named here for readers and linters.
__salt__: dict = {}
__context__: dict = {}
__utils__: dict = {}

GATEWAY_UNIT = "ccmirror-weed-s3"  # salt/storage/seaweedfs/service.sls
# What lets a downloader write, by site:storage_backend: (state id, sls) rendered alone.
ACCESS_STATES = {
    "rsync": ("storage-authorized-keys-file-managed", "storage.config"),
    "seaweedfs": ("storage-weed-s3-config-file-managed", "storage.seaweedfs.config"),
}


def __virtual__():
    return __virtualname__


def _failed(message: str) -> dict:
    __context__["retcode"] = 1
    log.error("ccmirror_storage_access: %s", message)
    return {"result": False, "comment": message}


def apply():
    """
    Render who may write to storage now (the rsync target's authorized keys, or the S3
    gateway's identities, as pillar has them) and make it take effect: the one state that
    renders it, not a highstate (a droplet not yet set up must not start its servers here),
    then, on SeaweedFS, the gateway's reload.

    CLI Example::

        salt 'st-*' ccmirror_storage_access.apply
    """
    # The pillar as the master compiles it now: the minion's own copy is from its start (a
    # highstate does not renew it), perhaps from before the site's facts were written, and
    # saltutil.refresh_pillar would renew it for later jobs, not this one. pillar.items
    # compiles afresh (unmasked: read here, never returned); the state run compiles its own.
    fresh = __salt__["pillar.items"](unmask=True)
    backend = salt.utils.data.traverse_dict_and_list(fresh, "site:storage_backend", "rsync")
    if backend not in ACCESS_STATES:
        return _failed(f"site:storage_backend {backend!r}: no storage access to apply here")
    state_id, sls = ACCESS_STATES[backend]
    # The fleet runner's reading of a state run (_utils/ reaches minions with the modules).
    failed = __utils__["fleet_minions.state_failure"](__salt__["state.sls_id"](state_id, mods=sls))
    if failed:
        return _failed(f"{state_id}: {failed}")
    if backend == "rsync":
        return {"result": True, "comment": f"{state_id} applied"}
    reloaded = reload_gateway()
    return {**reloaded, "comment": f"{state_id} applied; {reloaded['comment']}"}


def reload_gateway(unit=GATEWAY_UNIT):
    """
    Make the S3 gateway read its identities (s3.json) again, by SIGHUP through systemd, when
    it runs; one that does not run reads them when it starts.

    CLI Example::

        salt 'st-*' ccmirror_storage_access.reload_gateway
    """
    if not __salt__["service.status"](unit):
        return {"result": True, "comment": f"{unit} is not running: it reads s3.json at start"}
    if not __salt__["service.reload"](unit):
        return _failed(f"{unit} did not reload")
    return {"result": True, "comment": f"{unit} reloaded"}
