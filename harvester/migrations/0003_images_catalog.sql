-- The catalog: one row per photo, merged from every source by `harvester reconcile`, with the
-- photo's download state. The queue service vends from it (`state`, by `id`).

CREATE TABLE IF NOT EXISTS images (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    photo_id BIGINT UNSIGNED NOT NULL,
    owner VARCHAR(64) NOT NULL,
    owner_name VARCHAR(255) NOT NULL DEFAULT '',
    title VARCHAR(1024) NOT NULL DEFAULT '',
    license_id SMALLINT UNSIGNED NOT NULL,
    page_url VARCHAR(255) NOT NULL,
    image_url VARCHAR(512) NOT NULL,
    image_size VARCHAR(4) NOT NULL,
    -- A smaller size to fall back on (YFCC100M's 500px URL) when the original is refused.
    fallback_url VARCHAR(512) NULL,
    width INT UNSIGNED NULL,
    height INT UNSIGNED NULL,
    uploaded_at BIGINT NOT NULL,
    -- Every source that saw the photo, and the one whose fields the row holds.
    sources SET('timeslice', 'query', 'yfcc') NOT NULL,
    data_source ENUM('timeslice', 'query', 'yfcc') NOT NULL,
    -- pending: in the download queue; withdrawn: no longer CC, out of the queue.
    state ENUM('pending', 'leased', 'stored', 'failed', 'gone', 'withdrawn')
        NOT NULL DEFAULT 'pending',
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
        ON UPDATE CURRENT_TIMESTAMP(6),
    UNIQUE KEY images_photo (photo_id),
    KEY images_state (state, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Every license change reconcile saw, so attribution history is never lost.
CREATE TABLE IF NOT EXISTS image_license_changes (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    photo_id BIGINT UNSIGNED NOT NULL,
    old_license_id SMALLINT UNSIGNED NOT NULL,
    new_license_id SMALLINT UNSIGNED NOT NULL,
    source ENUM('timeslice', 'query', 'yfcc') NOT NULL,
    state_before ENUM('pending', 'leased', 'stored', 'failed', 'gone', 'withdrawn') NOT NULL,
    changed_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY image_license_changes_photo (photo_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- One row per reconcile pass; `next_photo_id` is where an interrupted pass resumes.
CREATE TABLE IF NOT EXISTS reconcile_runs (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    state ENUM('running', 'done') NOT NULL DEFAULT 'running',
    next_photo_id BIGINT UNSIGNED NOT NULL DEFAULT 0,
    batches INT UNSIGNED NOT NULL DEFAULT 0,
    source_rows BIGINT UNSIGNED NOT NULL DEFAULT 0,
    inserted BIGINT UNSIGNED NOT NULL DEFAULT 0,
    updated BIGINT UNSIGNED NOT NULL DEFAULT 0,
    license_changes BIGINT UNSIGNED NOT NULL DEFAULT 0,
    started_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    finished_at DATETIME(6) NULL,
    KEY reconcile_runs_state (state)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
