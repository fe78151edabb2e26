-- The YFCC100M source table, filled by `harvester import-yfcc` from the dataset's files:
-- only what attribution needs, in the same shape as the API source tables (0001), plus the
-- dataset's own 500 px download URL as a fallback when the original is refused.
--
-- `image_url` is the original rebuilt from farm/server/secret_original/extension
-- (`image_size` 'o'); when a line lacks those, it is the 500 px download URL ('m', Flickr's
-- name for that size) and `fallback_url` is NULL. YFCC100M has no dimensions: width and
-- height stay NULL. `uploaded_at` is the dataset's "date uploaded" (unix seconds).
-- `first_seen` is when an import first stored the photo; `last_seen` when an import last
-- changed its row (re-importing the same file writes nothing, so it stays put).
--
-- No secondary index: each one slows a bulk load of ~100M rows, and reconcile walks this
-- table by its primary key.
--
-- The staging table each import loads into is a TEMPORARY table of its own connection
-- (harvester/yfcc/load.py), so parallel imports never share one.

CREATE TABLE IF NOT EXISTS yfcc_photos (
    photo_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    owner VARCHAR(64) NOT NULL,
    owner_name VARCHAR(255) NOT NULL DEFAULT '',
    title VARCHAR(1024) NOT NULL DEFAULT '',
    license_id SMALLINT UNSIGNED NOT NULL,
    page_url VARCHAR(255) NOT NULL,
    image_url VARCHAR(512) NOT NULL,
    image_size VARCHAR(4) NOT NULL,
    fallback_url VARCHAR(512) NULL,
    width INT UNSIGNED NULL,
    height INT UNSIGNED NULL,
    uploaded_at BIGINT NOT NULL,
    first_seen DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    last_seen DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
