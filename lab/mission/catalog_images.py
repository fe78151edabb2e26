"""Fill the `images` catalog directly with pending photos, for queue tests and benchmarks:
millions of rows in seconds, from MariaDB's sequence engine (no sources, no reconcile)."""

from __future__ import annotations

FIRST_PHOTO_ID = 5_000_000_000


def fill_images(conn, n: int, *, chunk: int = 1_000_000) -> None:
    """`n` pending CC photos with every attribution field a downloader writes."""
    with conn.cursor() as cur:
        cur.execute("SELECT COALESCE(MAX(photo_id), %s) FROM images", (FIRST_PHOTO_ID,))
        base = int(cur.fetchone()[0])
        for start in range(1, n + 1, chunk):
            end = min(start + chunk - 1, n)
            photo = f"({base} + seq)"
            cur.execute(
                "INSERT INTO images (photo_id, owner, owner_name, title, license_id, page_url,"
                " image_url, image_size, fallback_url, width, height, uploaded_at, sources,"
                " data_source, state)"
                f" SELECT {photo}, CONCAT(seq MOD 5000, '@N01'), CONCAT('owner ', seq MOD 5000),"
                f" CONCAT('photo ', seq), IF(seq MOD 2 = 0, 4, 14),"
                f" CONCAT('https://www.flickr.com/photos/', seq MOD 5000, '@N01/', {photo}, '/'),"
                f" CONCAT('https://live.staticflickr.com/65535/', {photo}, '_def_o.jpg'), 'o',"
                f" CONCAT('https://live.staticflickr.com/65535/', {photo}, '_def_b.jpg'),"
                " 4000, 3000, 1500000000 + seq, 'timeslice', 'timeslice', 'pending'"
                f" FROM seq_{start}_to_{end}"
            )
            conn.commit()
