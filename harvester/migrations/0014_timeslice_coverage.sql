-- `harvester seed increment` starts at the highest max_upload of the time-slice tasks, and
-- `harvester status` finds how far the done slices reach without a gap: one index dive for
-- the first, one index-only scan in upload order (no table rows read) for the second.
CREATE INDEX IF NOT EXISTS search_tasks_reach ON search_tasks (source, max_upload);
CREATE INDEX IF NOT EXISTS search_tasks_span ON search_tasks (source, min_upload, max_upload, state);
