"""Takedowns: a photo or a whole owner withdrawn for good (`harvester takedown`).

`requests.py` records a takedown and takes its photos out of the queue (`images.state =
'taken_down'`, a state nothing but a takedown sets and nothing changes back: reconcile and
the queue keep it, the storage audit neither adopts nor restores it); `storage.py` moves their
stored objects out of the public `images/` prefix. Every step is a row of `takedown_log`."""
