-- `harvester seed increment` starts at the highest max_upload of the time-slice tasks, and
-- `harvester status` finds how far the done slices reach from the first without a gap: index
-- dives for the highest end and for the first task of each unfinished state, and one
-- index-only scan of the top-level slices in upload order for a gap (LAG over it is linear;
-- MariaDB 10.11 computes a running MAX() window in quadratic time: 14 s for 20,000 rows).
CREATE INDEX IF NOT EXISTS search_tasks_reach ON search_tasks (source, max_upload);
CREATE INDEX IF NOT EXISTS search_tasks_open ON search_tasks (source, state, min_upload);
CREATE INDEX IF NOT EXISTS search_tasks_span ON search_tasks (source, parent_id, min_upload, max_upload);
