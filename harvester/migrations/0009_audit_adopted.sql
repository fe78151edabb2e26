-- Photos the S3 audit found on storage at their own key while the catalog did not have them
-- stored (a catalog restored from a backup older than the bucket, a lost report), and marked
-- stored rather than fetched again (or, in a dry run, would have).
ALTER TABLE storage_audits ADD COLUMN adopted BIGINT UNSIGNED NOT NULL DEFAULT 0;
