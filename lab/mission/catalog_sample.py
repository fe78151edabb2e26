"""Fill the three source tables with overlapping generated rows, in SQL, for tests and the
reconcile benchmark: millions of rows in seconds, from MariaDB's sequence engine.

For `n` photos (ids 1000, 1003, 1006, …): every photo is in YFCC100M; two thirds are in the
time slices (newer data: some titles and licenses differ); one in five is in the query
results, one in ten of those seen after the time slices.
"""

from __future__ import annotations

FIRST_PHOTO_ID = 1000
ID_STEP = 3


def fill_sources(conn, n: int) -> None:
    """Insert the sample into flickr_timeslice_photos, flickr_query_photos, yfcc_photos."""
    with conn.cursor() as cur:
        for start in range(1, n + 1, 1_000_000):
            end = min(start + 999_999, n)
            seq = f"seq_{start}_to_{end}"
            photo = f"({FIRST_PHOTO_ID} + (seq - 1) * {ID_STEP})"
            cur.execute(
                "INSERT INTO yfcc_photos (photo_id, owner, owner_name, title, license_id,"
                " page_url, image_url, image_size, fallback_url, uploaded_at, last_seen)"
                f" SELECT {photo}, CONCAT(seq MOD 5000, '@N01'), CONCAT('owner ', seq MOD 5000),"
                f" CONCAT('yfcc title ', seq), 1 + seq MOD 6,"
                f" CONCAT('https://www.flickr.com/photos/', seq MOD 5000, '@N01/', {photo}, '/'),"
                f" CONCAT('https://farm1.staticflickr.com/1/', {photo}, '_abc_o.jpg'), 'o',"
                f" CONCAT('https://farm1.staticflickr.com/1/', {photo}, '_abc.jpg'),"
                f" 1100000000 + seq, '2014-06-01' FROM {seq}"
            )
            cur.execute(
                "INSERT INTO flickr_timeslice_photos (photo_id, owner, owner_name, title,"
                " license_id, page_url, image_url, image_size, width, height, uploaded_at,"
                " task_id, last_seen)"
                f" SELECT {photo}, CONCAT(seq MOD 5000, '@N01'), CONCAT('owner ', seq MOD 5000),"
                " IF(seq MOD 7 = 0, CONCAT('renamed ', seq), CONCAT('yfcc title ', seq)),"
                " IF(seq MOD 11 = 0, 11, 1 + seq MOD 6),"
                f" CONCAT('https://www.flickr.com/photos/', seq MOD 5000, '@N01/', {photo}, '/'),"
                f" CONCAT('https://live.staticflickr.com/65535/', {photo}, '_def_o.jpg'), 'o',"
                f" 4000, 3000, 1100000000 + seq, 1, '2026-01-01' FROM {seq} WHERE seq MOD 3 <> 0"
            )
            cur.execute(
                "INSERT INTO flickr_query_photos (photo_id, owner, owner_name, title,"
                " license_id, page_url, image_url, image_size, width, height, uploaded_at,"
                " task_id, last_seen)"
                f" SELECT {photo}, CONCAT(seq MOD 5000, '@N01'), CONCAT('owner ', seq MOD 5000),"
                " CONCAT('query title ', seq), 1 + seq MOD 6,"
                f" CONCAT('https://www.flickr.com/photos/', seq MOD 5000, '@N01/', {photo}, '/'),"
                f" CONCAT('https://live.staticflickr.com/65535/', {photo}, '_def_b.jpg'), 'l',"
                " 1024, 768, 1100000000 + seq, 1,"
                f" IF(seq MOD 10 = 0, '2026-02-01', '2025-06-01') FROM {seq} WHERE seq MOD 5 = 0"
            )
    conn.commit()
