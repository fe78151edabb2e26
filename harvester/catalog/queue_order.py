"""When a pending photo of the catalog is leased: its priority level, and whether it waits out
a retry backoff. Shared by reconcile (which sets the priority), the queue (which leases by it
and parks retried photos) and the counts of both.

Priority (`images.priority`, migration 0011): photos found by query tasks, the search terms
people actually use, are leased before photos found by time slices. The queue leases level
by level, highest first, each a range of the `(state, priority, id)` index: no sort, no scan.

Backoff: a photo reported `retry` waits before it is leased again, parked under a lease row of
`BACKOFF_WORKER` that expires when the wait ends (harvester.queue.leases); the reaper returns
it to the queue then, as it does any lapsed lease's photos.
"""

from __future__ import annotations

TIMESLICE = 0  # time slices and YFCC100M: the catalog's bulk
QUERY = 1  # seen by a query task
# Highest first: the order the queue leases them in. Reconcile writes no other value.
LEVELS = (QUERY, TIMESLICE)

# The worker of parking leases. A real worker's name starts with a letter or digit
# (harvester.queue.tokens.WORKER_NAME), so no token ever names this one: no worker can report,
# extend or release a parking lease, and none counts it among its open leases.
BACKOFF_WORKER = "~backoff"
