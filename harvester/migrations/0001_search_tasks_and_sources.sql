-- Search tasks, the Flickr license table, one table per harvest source, and API call counts.
-- Every statement is idempotent (IF NOT EXISTS) because MariaDB DDL does not roll back: a
-- migration interrupted midway is simply applied again.

CREATE TABLE IF NOT EXISTS licenses (
    id SMALLINT UNSIGNED NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    url VARCHAR(512) NOT NULL,
    is_cc BOOLEAN NOT NULL,
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
        ON UPDATE CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- One unit of harvest work: an inclusive upload-time range, optionally narrowed to a search
-- text and to a set of licenses (`licenses`, comma-separated ids; NULL = every CC license). `task_key` makes seeding idempotent. A worker holds a task under a
-- lease (worker + lease_expires) and saves its page cursor after every stored page.
CREATE TABLE IF NOT EXISTS search_tasks (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    task_key VARCHAR(190) NOT NULL,
    source ENUM('timeslice', 'query') NOT NULL,
    query_text VARCHAR(500) NULL,
    min_upload BIGINT NOT NULL,
    max_upload BIGINT NOT NULL,
    licenses VARCHAR(100) NULL,
    parent_id BIGINT UNSIGNED NULL,
    state ENUM('pending', 'running', 'done', 'failed') NOT NULL DEFAULT 'pending',
    -- The page cursor: results are walked newest first, in windows of at most the API's cap.
    cursor_max_upload BIGINT NOT NULL,
    cursor_page INT UNSIGNED NOT NULL DEFAULT 1,
    window_seen INT UNSIGNED NOT NULL DEFAULT 0,
    window_oldest BIGINT NULL,
    window_oldest_count INT UNSIGNED NOT NULL DEFAULT 0,
    total_reported INT UNSIGNED NULL,
    photos_seen INT UNSIGNED NOT NULL DEFAULT 0,
    api_calls INT UNSIGNED NOT NULL DEFAULT 0,
    attempts SMALLINT UNSIGNED NOT NULL DEFAULT 0,
    completions SMALLINT UNSIGNED NOT NULL DEFAULT 0,
    worker VARCHAR(100) NULL,
    lease_expires DATETIME(6) NULL,
    not_before DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    last_error VARCHAR(1000) NULL,
    note VARCHAR(255) NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
        ON UPDATE CURRENT_TIMESTAMP(6),
    finished_at DATETIME(6) NULL,
    UNIQUE KEY search_tasks_key (task_key),
    KEY search_tasks_claimable (state, not_before, id),
    KEY search_tasks_leases (state, lease_expires),
    KEY search_tasks_worker (worker, state),
    KEY search_tasks_parent (parent_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- What each source saw: only what attribution needs (DESIGN.md). `image_size` records which
-- Flickr size the URL is ('o' when the owner allows originals, else the largest returned).
CREATE TABLE IF NOT EXISTS flickr_timeslice_photos (
    photo_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    owner VARCHAR(64) NOT NULL,
    owner_name VARCHAR(255) NOT NULL DEFAULT '',
    title VARCHAR(1024) NOT NULL DEFAULT '',
    license_id SMALLINT UNSIGNED NOT NULL,
    page_url VARCHAR(255) NOT NULL,
    image_url VARCHAR(512) NOT NULL,
    image_size VARCHAR(4) NOT NULL,
    width INT UNSIGNED NULL,
    height INT UNSIGNED NULL,
    uploaded_at BIGINT NOT NULL,
    task_id BIGINT UNSIGNED NOT NULL,
    first_seen DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    last_seen DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY flickr_timeslice_photos_uploaded (uploaded_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS flickr_query_photos (
    photo_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    owner VARCHAR(64) NOT NULL,
    owner_name VARCHAR(255) NOT NULL DEFAULT '',
    title VARCHAR(1024) NOT NULL DEFAULT '',
    license_id SMALLINT UNSIGNED NOT NULL,
    page_url VARCHAR(255) NOT NULL,
    image_url VARCHAR(512) NOT NULL,
    image_size VARCHAR(4) NOT NULL,
    width INT UNSIGNED NULL,
    height INT UNSIGNED NULL,
    uploaded_at BIGINT NOT NULL,
    task_id BIGINT UNSIGNED NOT NULL,
    first_seen DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    last_seen DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY flickr_query_photos_uploaded (uploaded_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- API calls and photos per worker per minute: `status` derives totals and rates from it.
CREATE TABLE IF NOT EXISTS api_call_minutes (
    minute DATETIME NOT NULL,
    worker VARCHAR(100) NOT NULL,
    calls INT UNSIGNED NOT NULL DEFAULT 0,
    photos INT UNSIGNED NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, worker)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
