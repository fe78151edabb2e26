-- The catalog learns each stored photo's MD5, beside its SHA-256: an S3 store lists every
-- object's size and ETag (the hex MD5 of its bytes for a single PUT) in one paged walk, but
-- no SHA-256 (that takes a HEAD per object). So the storage audit on S3 compares size and
-- MD5. NULL for photos stored before this column existed: the audit checks their size.
-- Both columns come last, so MariaDB adds them instantly, without rebuilding the tables.
ALTER TABLE stored_images ADD COLUMN md5 BINARY(16) NULL;

-- Overwritten photos whose stored version the S3 audit made the latest again (or, in a dry
-- run, would have).
ALTER TABLE storage_audits ADD COLUMN restored BIGINT UNSIGNED NOT NULL DEFAULT 0;
