-- Re-checks (issue #21): generations of search tasks, the background re-check of stored
-- photos, and the flags of stored photos no longer CC or gone.

-- A re-harvest of a range seeds its tasks again as the next generation: the same task_key,
-- generation N+1, so the key no longer refuses it. A child task has its parent's generation.
ALTER TABLE search_tasks
    ADD COLUMN IF NOT EXISTS generation SMALLINT UNSIGNED NOT NULL DEFAULT 1 AFTER task_key;
ALTER TABLE search_tasks
    ADD UNIQUE KEY IF NOT EXISTS search_tasks_key_generation (task_key, generation);
ALTER TABLE search_tasks DROP INDEX IF EXISTS search_tasks_key;

-- The last re-check of each stored photo (`harvester recheck`), walked oldest-checked first
-- (NULL: enrolled, never checked). A table of its own rather than a column and an index on
-- the 500M-row catalog. `result`: what Flickr said; `license_id`: the license it reported.
CREATE TABLE IF NOT EXISTS image_checks (
    image_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    checked_at DATETIME(6) NULL,
    result ENUM('ok', 'not_cc', 'gone', 'private') NULL,
    license_id SMALLINT UNSIGNED NULL,
    KEY image_checks_checked (checked_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- How far `harvester recheck` has enrolled stored photos into image_checks, by
-- stored_images.stored_at (one row).
CREATE TABLE IF NOT EXISTS recheck_cursor (
    id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
    enrolled_until DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- A stored photo that is no longer CC, gone from Flickr or private keeps `state = 'stored'`
-- (its bytes are on storage, and an audit or backup must still find them) and gets a flag
-- here: few rows, no change to the catalog's ENUM or its state index. A flag is removed
-- when the photo is CC and public again; the history stays in image_license_changes and
-- image_checks. `harvester flags export` lists them.
CREATE TABLE IF NOT EXISTS image_flags (
    image_id BIGINT UNSIGNED NOT NULL,
    flag ENUM('not_cc', 'gone', 'private') NOT NULL,
    since DATETIME(6) NOT NULL,
    detail VARCHAR(255) NULL,
    PRIMARY KEY (image_id, flag)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
