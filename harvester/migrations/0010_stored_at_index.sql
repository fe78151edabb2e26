-- `harvester backup-lag` finds the newest stored photo that is on the backup target by a
-- binary search over the store order: a few dozen indexed lookups, whatever the catalog's size,
-- and the count of photos behind it an index range as long as the lag.
CREATE INDEX IF NOT EXISTS stored_images_stored_at ON stored_images (stored_at, image_id);
