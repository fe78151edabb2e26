-- The download queue that `harvester serve` vends from the catalog: leases, what was stored,
-- and the service's switches. A photo's place in the queue is `images.state`; a leased photo
-- names its lease in `images.lease_id` (no index: a lease finds its photos through its own
-- `item_ids`, by primary key, so the 500M-row catalog carries no extra index).

ALTER TABLE images
    ADD COLUMN IF NOT EXISTS lease_id BIGINT UNSIGNED NULL,
    -- Failed `retry` reports so far; at the service's max_attempts the photo is `failed`.
    ADD COLUMN IF NOT EXISTS attempts SMALLINT UNSIGNED NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS last_error VARCHAR(255) NULL;

-- One lease: a batch of photos held by one worker until `expires_at`. Lease rows outlive
-- their photos' reports so that a late report is still checked against its lease; closed
-- leases are pruned after a retention period.
--   active: held; released: given back; expired: lapsed, photos back to pending;
--   done: every photo reported.
CREATE TABLE IF NOT EXISTS leases (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    worker VARCHAR(100) NOT NULL,
    state ENUM('active', 'released', 'expired', 'done') NOT NULL DEFAULT 'active',
    items INT UNSIGNED NOT NULL,
    -- The catalog ids leased, comma-separated, in id order.
    item_ids MEDIUMTEXT NOT NULL,
    reported INT UNSIGNED NOT NULL DEFAULT 0,
    stored INT UNSIGNED NOT NULL DEFAULT 0,
    failed INT UNSIGNED NOT NULL DEFAULT 0,
    created_at DATETIME(6) NOT NULL,
    expires_at DATETIME(6) NOT NULL,
    last_report_at DATETIME(6) NULL,
    closed_at DATETIME(6) NULL,
    KEY leases_state_expires (state, expires_at),
    KEY leases_report (last_report_at),
    KEY leases_worker_report (worker, last_report_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- What a downloader put on storage, one row per photo: the first report wins, so a photo
-- pushed twice (at-least-once delivery) keeps one record. A table of its own rather than
-- columns of `images`: filling NULL columns grows every catalog row in place, which measured
-- twice the cost of this narrow insert.
CREATE TABLE IF NOT EXISTS stored_images (
    image_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    sha256 BINARY(32) NOT NULL,
    bytes BIGINT UNSIGNED NOT NULL,
    path VARCHAR(1024) NOT NULL,
    worker VARCHAR(100) NOT NULL,
    lease_id BIGINT UNSIGNED NOT NULL,
    stored_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- The queue's switches, shared by every service process: `maintenance` (on/off) and
-- `maintenance_retry_after` (seconds a worker is told to wait).
CREATE TABLE IF NOT EXISTS queue_settings (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    value VARCHAR(255) NOT NULL,
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
        ON UPDATE CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
