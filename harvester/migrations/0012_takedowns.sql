-- Takedowns (`harvester takedown`): a photo or a whole owner withdrawn for good, and a log of
-- every step taken for each photo, with who and when.
--
-- `taken_down` is a state of its own rather than `withdrawn`: reconcile puts a `withdrawn`
-- photo back to `pending` when a source sees it CC again, which a takedown must never do, and
-- the storage step finds the photos it has to clear by this state through the `(state, id)`
-- index. Appended at the end of both ENUMs, so MariaDB changes only the table definition
-- (instant, no rebuild of the 500M-row catalog). `image_license_changes.state_before` copies
-- a photo's state, so it needs the value too.
ALTER TABLE images MODIFY state
    ENUM('pending', 'leased', 'stored', 'failed', 'gone', 'withdrawn', 'taken_down')
    NOT NULL DEFAULT 'pending', ALGORITHM=INSTANT;
ALTER TABLE image_license_changes MODIFY state_before
    ENUM('pending', 'leased', 'stored', 'failed', 'gone', 'withdrawn', 'taken_down')
    NOT NULL, ALGORITHM=INSTANT;

-- One request: a photo id or an owner NSID (exactly one), kept for good. A photo id the
-- catalog does not know yet is recorded all the same, so that a later harvest refuses it.
CREATE TABLE IF NOT EXISTS takedowns (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    photo_id BIGINT UNSIGNED NULL,
    owner VARCHAR(64) NULL,
    reason VARCHAR(1024) NOT NULL,
    requested_by VARCHAR(100) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    UNIQUE KEY takedowns_photo (photo_id),
    UNIQUE KEY takedowns_owner (owner),
    CONSTRAINT takedowns_one_target CHECK ((photo_id IS NULL) <> (owner IS NULL))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Every step for a photo: requested (photo not in the catalog yet), withdrawn (out of the
-- queue), stored_after_takedown (a lease's bytes landed anyway), object_moved (out of
-- images/ into takedown/), object_purged (the public key's versions removed, admin key),
-- no_object (nothing on storage), harvest_refused (a source saw it again).
CREATE TABLE IF NOT EXISTS takedown_log (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    takedown_id INT UNSIGNED NULL,
    photo_id BIGINT UNSIGNED NOT NULL,
    step ENUM('requested', 'withdrawn', 'stored_after_takedown', 'object_moved',
              'object_purged', 'no_object', 'harvest_refused') NOT NULL,
    actor VARCHAR(100) NOT NULL,
    detail VARCHAR(1024) NOT NULL DEFAULT '',
    logged_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY takedown_log_photo (photo_id, id),
    KEY takedown_log_takedown (takedown_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
