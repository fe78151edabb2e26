-- Download priority (harvester/catalog/queue_order.py): reconcile gives photos that a query
-- task saw priority 1, the rest 0, and the queue leases the highest level first, each level a
-- range of the state index. Rows from before this migration get their priority from the next
-- reconcile pass (`harvester reconcile --restart`), batch by batch: one UPDATE of 500M rows
-- here would hold its locks and undo log for hours.
--
-- On a 500M-row catalog: ADD COLUMN is INSTANT (metadata only). The index is rebuilt INPLACE
-- with LOCK=NONE: reads and writes go on (leases use the old index until the swap at the end,
-- a brief metadata lock). Measured here (2 busy cores, table in the buffer pool): 6.7 s for 2M
-- rows, 21.8 s for 6M (3.6 us a row), while a writer's updates never waited over 32 ms: about
-- 30 minutes for 500M from memory, an hour or two from disk (a full read of the table and an
-- external sort of 500M short entries in tmpdir). The writes made meanwhile queue up in
-- innodb_online_alter_log_max_size (dynamic): raise it for the run, or leave the queue in
-- maintenance mode, or the ALTER stops with "online log too big" and changes nothing.
ALTER TABLE images
    ADD COLUMN IF NOT EXISTS priority TINYINT UNSIGNED NOT NULL DEFAULT 0,
    ALGORITHM=INSTANT;
ALTER TABLE images
    DROP INDEX images_state,
    ADD INDEX images_state (state, priority, id),
    ALGORITHM=INPLACE, LOCK=NONE;

-- A photo reported `retry` waits out its backoff parked under a lease of its own state
-- (harvester/queue/backoff.py), which nothing that counts `active` leases sees. A value
-- added at the end of an ENUM is INSTANT; the leases table is small in any case.
ALTER TABLE leases
    MODIFY state ENUM('active', 'released', 'expired', 'done', 'backoff')
        NOT NULL DEFAULT 'active',
    ALGORITHM=INSTANT;
