-- One row per storage audit (`harvester audit-storage`, `salt-run audit.storage`): what the
-- walk of storage found against the catalog, and how many photos went back to the queue.
-- `harvester status` and `salt-run batch.status` show the latest. Dry runs are not recorded.

CREATE TABLE IF NOT EXISTS storage_audits (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    -- The storage walked (its minion id) and its root there.
    storage VARCHAR(255) NOT NULL,
    root VARCHAR(1024) NOT NULL DEFAULT '',
    -- When the walk began (UTC): photos stored later are left for the next audit.
    walked_at DATETIME(6) NOT NULL,
    -- Every file's bytes read (1), or hashes kept for files of unchanged size and mtime (0).
    full_hash BOOL NOT NULL,
    dry_run BOOL NOT NULL DEFAULT 0,
    files BIGINT UNSIGNED NOT NULL,
    bytes BIGINT UNSIGNED NOT NULL,
    stored BIGINT UNSIGNED NOT NULL,
    ok BIGINT UNSIGNED NOT NULL,
    missing BIGINT UNSIGNED NOT NULL,
    corrupt BIGINT UNSIGNED NOT NULL,
    unchecked BIGINT UNSIGNED NOT NULL,
    orphans BIGINT UNSIGNED NOT NULL,
    unreadable BIGINT UNSIGNED NOT NULL,
    requeued BIGINT UNSIGNED NOT NULL,
    -- JSON: the first paths of each kind, {"orphans": [...], "missing": [...], "corrupt": [...]}
    samples TEXT NOT NULL,
    seconds DOUBLE NOT NULL,
    finished_at DATETIME(6) NOT NULL,
    KEY storage_audits_finished (finished_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
