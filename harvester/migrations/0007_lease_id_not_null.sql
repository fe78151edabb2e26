-- A photo no lease holds has `lease_id = 0`, not NULL. Setting a NULL column grows the row
-- and setting it back shrinks it, which InnoDB cannot do in place: a lease and its report
-- cost 19-22 µs per photo against 9-10 µs for the same updates of a NOT NULL column
-- (measured on 300,000 catalog rows, batches of 500). The ALTER rebuilds the table once.
UPDATE images SET lease_id = 0 WHERE lease_id IS NULL;
ALTER TABLE images MODIFY lease_id BIGINT UNSIGNED NOT NULL DEFAULT 0;
