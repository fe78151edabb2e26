-- Download priority (harvester/catalog/queue_order.py): reconcile gives photos that a query
-- task saw priority 1, the rest 0, and the queue leases the highest level first, each level a
-- range of the state index. Rows from before this migration get their priority from the next
-- reconcile pass (`harvester reconcile --restart`), batch by batch: one UPDATE of 500M rows
-- here would hold its locks and undo log for hours.
--
-- On a 500M-row catalog: ADD COLUMN is INSTANT (metadata only, a moment). The index is rebuilt
-- INPLACE with LOCK=NONE: reads and writes go on (the lease path keeps using the old index until
-- the swap at the end, which takes a brief metadata lock); it reads the whole table once and
-- sorts 500M short entries: an hour or two on a large droplet (measured here: see the branch's
-- report), with innodb_online_alter_log_max_size room for the writes made meanwhile.
ALTER TABLE images
    ADD COLUMN IF NOT EXISTS priority TINYINT UNSIGNED NOT NULL DEFAULT 0,
    ALGORITHM=INSTANT;
ALTER TABLE images
    DROP INDEX images_state,
    ADD INDEX images_state (state, priority, id),
    ALGORITHM=INPLACE, LOCK=NONE;

-- A photo reported `retry` waits out its backoff parked under a lease of its own state
-- (harvester.queue.leases._park), which nothing that counts `active` leases sees. A value
-- added at the end of an ENUM is INSTANT; the leases table is small in any case.
ALTER TABLE leases
    MODIFY state ENUM('active', 'released', 'expired', 'done', 'backoff')
        NOT NULL DEFAULT 'active',
    ALGORITHM=INSTANT;
