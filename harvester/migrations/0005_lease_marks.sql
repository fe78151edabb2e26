-- A leased photo is now `pending` with its `lease_id` set (harvester.queue.leases): the
-- queue no longer moves it through the `(state, id)` index and back. Photos leased before
-- this migration keep their lease.
UPDATE images SET state = 'pending' WHERE state = 'leased';
