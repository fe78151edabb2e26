"""``flickr.photos.getInfo`` on the universe, as Flickr answers it: HTTP 200 either way, a
deleted, private or unknown photo is ``stat: fail`` code 1 (Flickr's docs: "The photo id was
either invalid or was for a photo not viewable by the calling user"), and the right
``secret`` skips the permission check, so a private photo is then shown with
``visibility.ispublic`` 0 while a deleted one stays not found."""

from __future__ import annotations

import time

from lab.sims.flickr.changes import DELETED, PRIVATE
from lab.sims.flickr.universe import Universe
from lab.sims.flickr.wire import ApiError, parse_int


def photo_info(u: Universe, params: dict[str, str]) -> dict:
    raw = params.get("photo_id", "")
    photo_id = parse_int(raw, -1)
    p = u.photo(photo_id) if photo_id >= 0 else None
    state = u.changes.state_of(photo_id)
    shared = params.get("secret") == (p.secret if p else None)
    if p is None or state == DELETED or (state == PRIVATE and not shared):
        raise ApiError(1, f'Photo "{raw}" not found (invalid ID)')
    taken = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(p.datetaken))
    return {
        "photo": {
            "id": str(p.id),
            "secret": p.secret,
            "server": p.server,
            "farm": p.farm,
            "dateuploaded": str(p.dateupload),
            "isfavorite": 0,
            "license": str(u.changes.license_of(p)),  # a string, as search's license is
            "safety_level": str(u.safety_of(p) - 1),
            "rotation": 0,
            "owner": {"nsid": p.owner, "username": p.ownername, "realname": ""},
            "title": {"_content": p.title},
            "visibility": {"ispublic": 0 if state == PRIVATE else 1, "isfriend": 0, "isfamily": 0},
            "dates": {"posted": str(p.dateupload), "taken": taken, "lastupdate": str(p.dateupload)},
            "media": "photo",
        }
    }
