"""The deterministic photo universe behind the Flickr simulator (pure Python, no HTTP).

Every photo is a function of ``(seed, bucket)``: a bucket is a 10-minute slice of upload time
aligned to the epoch (bucket ``b`` covers seconds ``[b*600, b*600+599]``). Buckets are generated
lazily and cached, in two layers:

* a *plan*: how many photos of each license slot the bucket holds (cheap; enough to count
  and to skip buckets with no matching license);
* the *photos* themselves (ids, owners, titles, secrets, sizes), built only when walked.

Bursty on purpose: most buckets hold a lognormal number of photos around ``density``, a few
are empty, ~5% are bursts of 5-15x, and at fixed places there are hot spots that defeat a
harvester which trusts Flickr's 4,000-result cap to be rare:

* a HOT WINDOW every ``hot_window_every`` buckets (bucket ``b`` with
  ``b % hot_window_every == hot_window_offset``): 4,600-6,900 CC photos in one bucket;
* a HOT SECOND every ``hot_second_every`` buckets (``b % hot_second_every ==
  hot_second_offset``): one second holding 4,500-6,900 photos, of which more than 4,000 are CC
  but fewer than 4,000 share any one license.

Both offsets come from the seed; a bucket that would be both is a hot second. ``0`` disables a
kind of hot spot.

License "slot" 17 is the simulated new license (CC BY 5.0): ~5% of photos sit in that slot and
carry license 17 when ``new_license`` is on, license 11 (CC BY 4.0, also CC) when it is off.
So switching it changes labels, never which photos are CC.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

BUCKET_SECONDS = 600
ID_STRIDE = 1 << 20
DEFAULT_START = 1072915200  # 2004-01-01T00:00:00Z
EXACT_COUNT_BUCKETS = 2000
MAX_NORMAL_PER_BUCKET = ID_STRIDE - 10_000  # room for hot spots: ids must stay per-bucket

_ARR_URL = (
    "https://www.flickrhelp.com/hc/en-us/articles/"
    "10710266545556-Using-Flickr-images-shared-by-other-members"
)
# The 2025 table (Flickr-Foundation/flickr-photos-api cassette), in Flickr's own order.
LICENSES_2025: tuple[tuple[int, str, str], ...] = (
    (0, "All Rights Reserved", _ARR_URL),
    (4, "CC BY 2.0", "https://creativecommons.org/licenses/by/2.0/"),
    (6, "CC BY-ND 2.0", "https://creativecommons.org/licenses/by-nd/2.0/"),
    (3, "CC BY-NC-ND 2.0", "https://creativecommons.org/licenses/by-nc-nd/2.0/"),
    (2, "CC BY-NC 2.0", "https://creativecommons.org/licenses/by-nc/2.0/"),
    (1, "CC BY-NC-SA 2.0", "https://creativecommons.org/licenses/by-nc-sa/2.0/"),
    (5, "CC BY-SA 2.0", "https://creativecommons.org/licenses/by-sa/2.0/"),
    (7, "No known copyright restrictions", "https://www.flickr.com/commons/usage/"),
    (8, "United States Government Work", "https://www.usa.gov/government-copyright"),
    (9, "Public Domain Dedication (CC0)", "https://creativecommons.org/publicdomain/zero/1.0/"),
    (10, "Public Domain Mark", "https://creativecommons.org/publicdomain/mark/1.0/"),
    (11, "CC BY 4.0", "https://creativecommons.org/licenses/by/4.0/"),
    (12, "CC BY-SA 4.0", "https://creativecommons.org/licenses/by-sa/4.0/"),
    (13, "CC BY-ND 4.0", "https://creativecommons.org/licenses/by-nd/4.0/"),
    (14, "CC BY-NC 4.0", "https://creativecommons.org/licenses/by-nc/4.0/"),
    (15, "CC BY-NC-SA 4.0", "https://creativecommons.org/licenses/by-nc-sa/4.0/"),
    (16, "CC BY-NC-ND 4.0", "https://creativecommons.org/licenses/by-nc-nd/4.0/"),
)
NEW_LICENSE: tuple[int, str, str] = (
    17,
    "CC BY 5.0 (simulated)",
    "https://creativecommons.org/licenses/by/5.0/",
)
NEW_LICENSE_SLOT = 17
NEW_LICENSE_FALLBACK = 11  # what slot-17 photos carry while the new license does not exist
N_SLOTS = 18

# Share of photos per license slot (sums to 1): ~50% ARR, 5% each of 7 and 8, 5% slot 17.
SLOT_WEIGHTS: tuple[float, ...] = (
    0.50,  # 0 All Rights Reserved
    0.040,
    0.035,
    0.040,
    0.045,
    0.030,
    0.020,  # 1-6 CC 2.0
    0.05,
    0.05,  # 7 no known restrictions, 8 US Government (not CC)
    0.020,
    0.020,  # 9 CC0, 10 PDM
    0.030,
    0.020,
    0.010,
    0.015,
    0.015,
    0.010,  # 11-16 CC 4.0
    0.05,  # 17 the simulated new license
)
_ALL_SLOTS = tuple(range(N_SLOTS))
_CUM_WEIGHTS = tuple(sum(SLOT_WEIGHTS[: i + 1]) for i in range(N_SLOTS))
CC_SLOTS = (1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14, 15, 16, 17)
NON_CC_SLOTS = (0, 7, 8)

# Flickr's size suffixes: (extras key, URL suffix, long edge; 0 = original, negative = square).
SIZES: tuple[tuple[str, str, int], ...] = (
    ("sq", "_s", -75),
    ("q", "_q", -150),
    ("t", "_t", 100),
    ("s", "_m", 240),
    ("n", "_n", 320),
    ("m", "", 500),
    ("z", "_z", 640),
    ("c", "_c", 800),
    ("l", "_b", 1024),
    ("h", "_h", 1600),
    ("k", "_k", 2048),
    ("3k", "_3k", 3072),
    ("4k", "_4k", 4096),
    ("5k", "_5k", 5120),
    ("6k", "_6k", 6144),
    ("o", "_o", 0),
)
# Sizes whose file has its own secret on Flickr (url_h, url_k, ... use a different secret).
OWN_SECRET_SIZES = frozenset({"h", "k", "3k", "4k", "5k", "6k"})
_SIZE_SALT = {
    "h": 0x51ED27,
    "k": 0x6A09E6,
    "3k": 0x3C6EF3,
    "4k": 0x1F83D9,
    "5k": 0x5BE0CD,
    "6k": 0x9B05688,
}

_VOCABULARY_TEXT = """
    sunset sunrise cat dog bridge river portrait lake mountain beach sea ocean forest tree
    flower rose garden park city street night sky cloud clouds rain snow winter summer spring
    autumn fall light shadow window door house church cathedral castle tower wall road train
    station car bus bike boat ship harbor harbour island desert field farm horse cow sheep bird
    birds eagle owl duck swan fish butterfly bee insect spider macro blue red green yellow
    orange purple pink black white grey gold silver old new little big morning evening
    afternoon day market festival concert music dance wedding family friends baby child girl
    boy woman man smile face eyes hands street art graffiti museum statue fountain square
    bridge canal valley hill rock stone sand wave waves storm fog mist moon stars star milky
    way reflection water ice fire smoke lights neon home kitchen food coffee tea cake bread
    wine beer trip travel holiday vacation hike trail camp view panorama skyline building
    architecture abstract texture pattern colors
"""
VOCABULARY: tuple[str, ...] = tuple(dict.fromkeys(_VOCABULARY_TEXT.split()))
EXOTIC_WORDS: tuple[str, ...] = ("café", "Zürich", "São", "Kraków", "naïve", "🌅", "東京", "Ωmega")

_GIVEN = (
    "Anna",
    "Ben",
    "Carla",
    "David",
    "Emma",
    "Felix",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kim",
    "Laura",
    "Marco",
    "Nina",
    "Omar",
    "Paula",
    "Quinn",
    "Rosa",
    "Sam",
    "Tara",
    "Umar",
    "Vera",
    "Will",
    "Xena",
    "Yusuf",
    "Zoë",
    "José",
    "François",
    "Søren",
    "Łukasz",
    "Ольга",
    "Ngọc",
)
_FAMILY = (
    "Smith",
    "Müller",
    "García",
    "Rossi",
    "Tanaka",
    "Nowak",
    "Dubois",
    "Silva",
    "Kowalski",
    "Johansson",
    "O'Brien",
    "Nguyễn",
    "Andersen",
    "Papadopoulos",
    "Björk",
    "Fernández",
)
_HANDLES = (
    "photos",
    "pics",
    "lens",
    "shots",
    "clicks",
    "foto",
    "images",
    "camera",
    "eye",
    "travels",
)
_ODD_NAMES = (
    "Tom & Jerry",
    "<b>bold</b> photographer",
    'The "Real" Lens',
    "it's me",
    "北京摄影",
    "A&B <Studio>",
    "d'Artagnan",
    "  spaces  ",
    "🌅 sunsets",
    "Ζαχαρίας",
)
_NSID_SUFFIXES = ("N00", "N02", "N03", "N04", "N05", "N06", "N07", "N08")
_ASPECTS = (4 / 3, 4 / 3, 4 / 3, 3 / 2, 3 / 2, 16 / 9, 1.0, 5 / 4)
TITLE_POOL_SIZE = 8192
_ERA_65535 = 1527811200  # 2018-06-01: from here on server "65535", farm 66
_MAX_OLD_SERVER = 7900


def stable_hash(*parts: object) -> int:
    """A stable 64-bit integer from ``parts`` (independent of PYTHONHASHSEED)."""
    text = ":".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def is_cc_url(url: str) -> bool:
    """True when a license URL is a Creative Commons license or public-domain tool."""
    return "creativecommons.org/licenses/" in url or "creativecommons.org/publicdomain/" in url


def query_words(text: str | None) -> frozenset[str]:
    """The words a ``text=`` search needs in a title (case-insensitive, whitespace-split)."""
    return frozenset(text.lower().split()) if text else frozenset()


def today_midnight_utc() -> int:
    return int(time.time()) // 86400 * 86400


@dataclass(slots=True)
class Photo:
    """One photo. Shared by the caches: treat as read-only."""

    id: int
    owner: str
    ownername: str
    title: str
    license: int
    dateupload: int
    secret: str
    server: str
    farm: int
    originalsecret: str | None
    originalformat: str | None
    width: int
    height: int
    allow_original: bool

    @property
    def datetaken(self) -> int:
        """Unix time the photo was taken: up to 30 days before upload (deterministic)."""
        return self.dateupload - (int(self.secret, 16) % (30 * 86400))


@dataclass(frozen=True, slots=True)
class Owner:
    nsid: str
    name: str
    allow_original: bool


@dataclass(frozen=True, slots=True)
class _Plan:
    """Photo counts per license slot for one bucket (before clipping to universe bounds)."""

    normal: tuple[int, ...]
    hot: tuple[int, ...] | None
    kind: str | None  # "window", "second" or None
    hot_second: int  # absolute unix second of the hot second, -1 when none

    def slot_count(self, slots: Iterable[int]) -> int:
        total = 0
        for s in slots:
            total += self.normal[s]
            if self.hot is not None:
                total += self.hot[s]
        return total


class Universe:
    """All photos of a simulated Flickr, generated lazily from ``seed``."""

    def __init__(
        self,
        *,
        seed: int = 1,
        start: int = DEFAULT_START,
        end: int | None = None,
        density: float = 40.0,
        hot_window_every: int = 2016,
        hot_second_every: int = 20160,
        originals_disallowed_fraction: float = 0.25,
        new_license: bool = False,
        image_base: str = "https://live.staticflickr.com",
        owners: int = 3000,
        cache_buckets: int = 4096,
    ) -> None:
        self.seed = seed
        self.start = start
        self.end = today_midnight_utc() if end is None else end
        self.density = density
        self.hot_window_every = max(0, hot_window_every)
        self.hot_second_every = max(0, hot_second_every)
        self.originals_disallowed_fraction = originals_disallowed_fraction
        self.new_license = new_license
        self.image_base = image_base.rstrip("/")
        self.hot_window_offset, self.hot_second_offset = self._hot_offsets()
        self._secret_salt = stable_hash(seed, "size-secret")
        self.owners = self._make_owners(owners)
        self.titles, self._title_words = self._make_titles()
        self._plan = functools.lru_cache(maxsize=1 << 15)(self._make_plan)
        self._bucket = functools.lru_cache(maxsize=cache_buckets)(self._make_bucket)

    # ------------------------------------------------------------------ tables
    def licenses(self) -> list[dict]:
        rows = list(LICENSES_2025)
        if self.new_license:
            rows.append(NEW_LICENSE)
        return [{"id": i, "name": n, "url": u} for i, n, u in rows]

    def cc_license_ids(self) -> set[int]:
        return {row["id"] for row in self.licenses() if is_cc_url(row["url"])}

    def hot_kind(self, b: int) -> str | None:
        """``"second"``, ``"window"`` or None: the kind of hot spot bucket ``b`` holds."""
        if self.hot_second_every and b % self.hot_second_every == self.hot_second_offset:
            return "second"
        if self.hot_window_every and b % self.hot_window_every == self.hot_window_offset:
            return "window"
        return None

    def _hot_offsets(self) -> tuple[int, int]:
        hwe, hse = self.hot_window_every, self.hot_second_every
        wo = stable_hash(self.seed, "hot-window") % hwe if hwe else 0
        so = stable_hash(self.seed, "hot-second") % hse if hse else 0
        if hwe and hse:
            g = math.gcd(hwe, hse)
            if g > 1 and so % g == wo % g:  # keep both kinds apart when arithmetic allows
                so = (so + 1) % hse
        return wo, so

    def _make_owners(self, n: int) -> list[Owner]:
        rng = random.Random(stable_hash(self.seed, "owners"))
        nsids: set[str] = set()
        while len(nsids) < n:
            nsids.add(f"{rng.randrange(10_000_000, 200_000_000)}@{rng.choice(_NSID_SUFFIXES)}")
        ordered = sorted(nsids)
        rng.shuffle(ordered)
        disallowed = set(rng.sample(range(n), round(n * self.originals_disallowed_fraction)))
        return [
            Owner(nsid, self._owner_name(rng, i), i not in disallowed)
            for i, nsid in enumerate(ordered)
        ]

    @staticmethod
    def _owner_name(rng: random.Random, i: int) -> str:
        r = rng.random()
        if r < 0.04:
            return _ODD_NAMES[i % len(_ODD_NAMES)]
        if r < 0.55:
            return f"{rng.choice(_GIVEN)} {rng.choice(_FAMILY)}"
        if r < 0.85:
            return f"{rng.choice(_GIVEN).lower()}{rng.choice(_HANDLES)}{rng.randrange(100)}"
        return f"{rng.choice(_GIVEN)}'s {rng.choice(_HANDLES)}"

    def _make_titles(self) -> tuple[list[str], dict[str, frozenset[str]]]:
        rng = random.Random(stable_hash(self.seed, "titles"))
        titles: list[str] = []
        for _ in range(TITLE_POOL_SIZE):
            titles.append(self._title(rng))
        return titles, {t: frozenset(t.lower().split()) for t in titles}

    @staticmethod
    def _title(rng: random.Random) -> str:
        r = rng.random()
        if r < 0.07:
            return ""
        if r < 0.15:
            return f"{rng.choice(('IMG_', 'DSC_', 'DSCF', 'P'))}{rng.randrange(10000):04d}"
        k = rng.choices((1, 2, 3, 4, 5), weights=(25, 30, 22, 14, 9))[0]
        words = [
            rng.choice(EXOTIC_WORDS) if rng.random() < 0.03 else rng.choice(VOCABULARY)
            for _ in range(k)
        ]
        if rng.random() < 0.6:
            words[0] = words[0].capitalize()
        return " ".join(words)

    # ------------------------------------------------------------------ plans
    def _make_plan(self, b: int) -> _Plan:
        rng = random.Random(stable_hash(self.seed, "plan", b))
        n = self._normal_count(rng)
        normal = [0] * N_SLOTS
        for s in rng.choices(_ALL_SLOTS, cum_weights=_CUM_WEIGHTS, k=n):
            normal[s] += 1
        kind = self.hot_kind(b)
        hot: list[int] | None = None
        hot_second = -1
        if kind == "window":
            normal_cc = sum(normal[s] for s in CC_SLOTS)
            hot = _allocate(max(0, rng.randint(4600, 6900) - normal_cc), CC_SLOTS, rng)
        elif kind == "second":
            hot = _allocate(rng.randint(4200, 6000), CC_SLOTS, rng)
            extra = _allocate(rng.randint(300, 900), NON_CC_SLOTS, rng)
            hot = [a + c for a, c in zip(hot, extra, strict=True)]
            hot_second = b * BUCKET_SECONDS + rng.randrange(BUCKET_SECONDS)
        return _Plan(tuple(normal), None if hot is None else tuple(hot), kind, hot_second)

    def _normal_count(self, rng: random.Random) -> int:
        """Photos in a bucket outside hot spots; mean ``density`` over many buckets."""
        u = rng.random()
        if u < 0.03:
            return 0
        if u < 0.08:  # a burst
            n = round(self.density * rng.uniform(5.0, 15.0))
        else:
            sigma = 0.6
            # 0.92 * m + 0.05 * 10 = 1 keeps the mean at density (empties and bursts included).
            n = round(self.density * (0.5 / 0.92) * rng.lognormvariate(-sigma * sigma / 2, sigma))
        return min(n, MAX_NORMAL_PER_BUCKET)

    def _slot_set(self, licenses: set[int] | None, new_license: bool) -> frozenset[int] | None:
        """License ids → the plan slots whose photos carry one of them (None = all)."""
        if licenses is None:
            return None
        slots = {s for s in licenses if 0 <= s < NEW_LICENSE_SLOT}
        if new_license and NEW_LICENSE_SLOT in licenses:
            slots.add(NEW_LICENSE_SLOT)
        if not new_license and NEW_LICENSE_FALLBACK in licenses:
            slots.add(NEW_LICENSE_SLOT)
        return frozenset(slots)

    def _license_of(self, slot: int, new_license: bool) -> int:
        if slot == NEW_LICENSE_SLOT and not new_license:
            return NEW_LICENSE_FALLBACK
        return slot

    # ------------------------------------------------------------------ photos
    def photos_in_bucket(self, b: int) -> list[Photo]:
        """The bucket's photos within the universe bounds, upload time then id ascending."""
        return list(self._bucket(b, self.new_license))

    def _make_bucket(self, b: int, new_license: bool) -> tuple[Photo, ...]:
        base = b * BUCKET_SECONDS
        if base + BUCKET_SECONDS - 1 < self.start or base > self.end:
            return ()
        plan = self._plan(b)
        rng = random.Random(stable_hash(self.seed, "photos", b))
        stamped = self._stamp_times(plan, base, rng)
        return tuple(self._build_photos(b, stamped, new_license, rng))

    def _stamp_times(self, plan: _Plan, base: int, rng: random.Random) -> list[tuple[int, int]]:
        """(upload second, slot) for every photo of the bucket, sorted by second."""
        slots = [s for s in _ALL_SLOTS for _ in range(plan.normal[s])]
        rng.shuffle(slots)
        r = rng.random
        stamped = [(base + int(r() * BUCKET_SECONDS), s) for s in slots]
        if plan.kind == "second":
            hs = plan.hot_second
            stamped = [
                (t if t != hs else base + (t - base + 1) % BUCKET_SECONDS, s) for t, s in stamped
            ]
            hot = [s for s in _ALL_SLOTS for _ in range(plan.hot[s])]  # type: ignore[index]
            rng.shuffle(hot)
            stamped.extend((hs, s) for s in hot)
        elif plan.kind == "window":
            hot = [s for s in _ALL_SLOTS for _ in range(plan.hot[s])]  # type: ignore[index]
            stamped.extend((base + int(r() * BUCKET_SECONDS), s) for s in hot)
        stamped.sort(key=_first)
        return stamped

    def _build_photos(
        self, b: int, stamped: list[tuple[int, int]], new_license: bool, rng: random.Random
    ) -> Iterator[Photo]:
        owners, titles = self.owners, self.titles
        n_owners, n_titles = len(owners), len(titles)
        lo, hi = self.start, self.end
        bits = rng.getrandbits
        id_base = b * ID_STRIDE
        for i, (t, slot) in enumerate(stamped):
            x = bits(128)
            if t < lo or t > hi:
                continue
            u = (x & 0xFFFF) / 65536.0
            owner = owners[int(n_owners * u * u)]
            title = titles[(x >> 16) % n_titles]
            secret = f"{(x >> 32) & 0xFFFFFFFFFF:010x}"
            long_edge = int(640 * 10.9375 ** (((x >> 72) & 0x3FF) / 1023.0))  # 640 .. 7000
            short_edge = round(long_edge / _ASPECTS[(x >> 82) & 7])
            portrait = (x >> 85) & 3 == 0
            server, farm = self._server(t, (x >> 87) & 0x7F)
            if owner.allow_original:
                osecret: str | None = f"{(x >> 94) & 0xFFFFFFFFFF:010x}"
                fmt_pick = (x >> 120) & 0xFF
                ofmt: str | None = "png" if fmt_pick < 6 else "gif" if fmt_pick < 7 else "jpg"
            else:
                osecret = ofmt = None
            yield Photo(
                id_base + i,
                owner.nsid,
                owner.name,
                title,
                self._license_of(slot, new_license),
                t,
                secret,
                server,
                farm,
                osecret,
                ofmt,
                short_edge if portrait else long_edge,
                long_edge if portrait else short_edge,
                owner.allow_original,
            )

    @staticmethod
    def _server(t: int, jitter: int) -> tuple[str, int]:
        if t >= _ERA_65535:
            return "65535", 66
        frac = max(0.0, (t - DEFAULT_START) / (_ERA_65535 - DEFAULT_START))
        server = 1 + int(frac * _MAX_OLD_SERVER) + jitter
        return str(server), 1 + server // 1000

    def photo_urls(self, p: Photo) -> list[tuple[str, str, int, int]]:
        """(size key, URL, width, height) for the sizes Flickr would list for ``p``.

        A size exists when the original's long edge reaches it; ``o`` only when the owner
        allows originals. ``h``, ``k`` and the ``Nk`` sizes have their own secret, as on Flickr.
        """
        out: list[tuple[str, str, int, int]] = []
        w, h = p.width, p.height
        long_edge = max(w, h)
        prefix = f"{self.image_base}/{p.server}/{p.id}_"
        for key, suffix, edge in SIZES:
            if edge < 0:
                out.append((key, f"{prefix}{p.secret}{suffix}.jpg", -edge, -edge))
            elif edge == 0:
                if p.allow_original and p.originalsecret:
                    out.append((key, f"{prefix}{p.originalsecret}_o.{p.originalformat}", w, h))
            elif long_edge >= edge:
                sw, sh = scaled(w, h, edge)
                secret = self.size_secret(p, key) if key in OWN_SECRET_SIZES else p.secret
                out.append((key, f"{prefix}{secret}{suffix}.jpg", sw, sh))
        return out

    def size_secret(self, p: Photo, key: str) -> str:
        """The secret of one of the sizes that have their own (cheap, deterministic)."""
        return size_secret(int(p.secret, 16), self.size_salt(key))

    def size_salt(self, key: str) -> int:
        return _SIZE_SALT[key] ^ self._secret_salt

    # ------------------------------------------------------------------ queries
    def _clip(self, min_upload: int | None, max_upload: int | None) -> tuple[int, int]:
        lo = self.start if min_upload is None else max(self.start, min_upload)
        hi = self.end if max_upload is None else min(self.end, max_upload)
        return lo, hi

    def search(
        self,
        min_upload: int | None,
        max_upload: int | None,
        licenses: set[int] | None,
        text: str | None,
        sort: str = "date-posted-desc",
    ) -> Iterator[Photo]:
        """Matching photos in sort order, walking buckets lazily from the sorted end."""
        lo, hi = self._clip(min_upload, max_upload)
        nl = self.new_license
        slots = self._slot_set(licenses, nl)
        words = query_words(text)
        if lo > hi or (slots is not None and not slots):
            return
        asc = sort == "date-posted-asc"
        b_lo, b_hi = lo // BUCKET_SECONDS, hi // BUCKET_SECONDS
        buckets = range(b_lo, b_hi + 1) if asc else range(b_hi, b_lo - 1, -1)
        title_words = self._title_words
        for b in buckets:
            if slots is not None and not self._plan(b).slot_count(slots):
                continue
            photos = self._bucket(b, nl)
            for p in photos if asc else reversed(photos):
                if p.dateupload < lo or p.dateupload > hi:
                    continue
                if licenses is not None and p.license not in licenses:
                    continue
                if words and not words <= title_words[p.title]:
                    continue
                yield p

    def count(
        self,
        min_upload: int | None,
        max_upload: int | None,
        licenses: set[int] | None = None,
        text: str | None = None,
    ) -> int:
        """Matching photos: exact up to ~2,000 buckets, an expected value beyond."""
        lo, hi = self._clip(min_upload, max_upload)
        if lo > hi:
            return 0
        if hi // BUCKET_SECONDS - lo // BUCKET_SECONDS < EXACT_COUNT_BUCKETS:
            return self._exact_count(lo, hi, licenses, text)
        return self._estimate_count(lo, hi, licenses, text)

    def _exact_count(self, lo: int, hi: int, licenses: set[int] | None, text: str | None) -> int:
        nl = self.new_license
        slots = self._slot_set(licenses, nl)
        if slots is not None and not slots:
            return 0
        if text and query_words(text):
            return sum(1 for _ in self.search(lo, hi, licenses, text))
        total = 0
        for b in range(lo // BUCKET_SECONDS, hi // BUCKET_SECONDS + 1):
            base = b * BUCKET_SECONDS
            if base >= lo and base + BUCKET_SECONDS - 1 <= hi:
                plan = self._plan(b)
                total += plan.slot_count(_ALL_SLOTS if slots is None else slots)
            else:
                total += sum(
                    1
                    for p in self._bucket(b, nl)
                    if lo <= p.dateupload <= hi and (licenses is None or p.license in licenses)
                )
        return total

    def _estimate_count(self, lo: int, hi: int, licenses: set[int] | None, text: str | None) -> int:
        slots = self._slot_set(licenses, self.new_license)
        slots_t = _ALL_SLOTS if slots is None else tuple(slots)
        p_license = sum(SLOT_WEIGHTS[s] for s in slots_t)
        words = query_words(text)
        p_text = 1.0
        if words:
            p_text = sum(1 for t in self.titles if words <= self._title_words[t]) / len(self.titles)
        expected = self.density * (hi - lo + 1) / BUCKET_SECONDS * p_license
        for b in self._hot_buckets(lo // BUCKET_SECONDS, hi // BUCKET_SECONDS):
            plan = self._plan(b)
            assert plan.hot is not None
            hot = sum(plan.hot[s] for s in slots_t)
            if plan.kind == "second":
                expected += hot if lo <= plan.hot_second <= hi else 0
            else:
                base = b * BUCKET_SECONDS
                inside = min(hi, base + BUCKET_SECONDS - 1) - max(lo, base) + 1
                expected += hot * inside / BUCKET_SECONDS
        return round(expected * p_text)

    def _hot_buckets(self, b_lo: int, b_hi: int) -> list[int]:
        """Every hot-spot bucket in ``[b_lo, b_hi]``, ascending."""
        found: set[int] = set()
        for every, offset in (
            (self.hot_window_every, self.hot_window_offset),
            (self.hot_second_every, self.hot_second_offset),
        ):
            if every:
                found.update(range(b_lo + (offset - b_lo) % every, b_hi + 1, every))
        return sorted(found)

    def truth(self, min_upload: int, max_upload: int) -> list[int]:
        """Sorted ids of every CC photo (current license table) uploaded in the range."""
        cc = self.cc_license_ids()
        found = self.search(min_upload, max_upload, cc, None, "date-posted-asc")
        return sorted(p.id for p in found)

    def hotspots(self, min_upload: int, max_upload: int) -> list[dict]:
        """Hot windows and hot seconds overlapping the range (clipped to the universe)."""
        lo, hi = self._clip(min_upload, max_upload)
        if lo > hi:
            return []
        cc = self.cc_license_ids()
        out: list[dict] = []
        for b in self._hot_buckets(lo // BUCKET_SECONDS, hi // BUCKET_SECONDS):
            plan = self._plan(b)
            if plan.kind == "second":
                s = plan.hot_second
                start = end = s
            else:
                start, end = b * BUCKET_SECONDS, b * BUCKET_SECONDS + BUCKET_SECONDS - 1
            if end < lo or start > hi:
                continue
            n = self._hotspot_cc(b, plan, start, end, cc)
            if n:
                out.append({"kind": plan.kind, "start": start, "end": end, "cc_photos": n})
        return out

    def _hotspot_cc(self, b: int, plan: _Plan, start: int, end: int, cc: set[int]) -> int:
        base = b * BUCKET_SECONDS
        if base >= self.start and base + BUCKET_SECONDS - 1 <= self.end and plan.hot:
            # CC-ness of a slot does not depend on new_license (slot 17 falls back to CC 11).
            if plan.kind == "second":
                return sum(plan.hot[s] for s in CC_SLOTS)
            return plan.slot_count(CC_SLOTS)
        return sum(
            1
            for p in self._bucket(b, self.new_license)
            if start <= p.dateupload <= end and p.license in cc
        )


def _first(pair: tuple[int, int]) -> int:
    return pair[0]


def _allocate(n: int, slots: tuple[int, ...], rng: random.Random) -> list[int]:
    """Split ``n`` photos over ``slots`` by SLOT_WEIGHTS (randomised rounding, exact sum)."""
    weights = [SLOT_WEIGHTS[s] for s in slots]
    total_w = sum(weights)
    counts = [0] * N_SLOTS
    for s, w in zip(slots, weights, strict=True):
        counts[s] = int(n * w / total_w + rng.random())
    heaviest = slots[max(range(len(slots)), key=weights.__getitem__)]
    counts[heaviest] += n - sum(counts)
    return counts


def size_secret(secret_bits: int, salt: int) -> str:
    """A size's own secret from the photo's secret (as an int) and the size's salt."""
    return f"{(((secret_bits ^ salt) * 0x9E3779B97F4A7C15) >> 24) & 0xFFFFFFFFFF:010x}"


def scaled(w: int, h: int, edge: int) -> tuple[int, int]:
    """(width, height) of a ``w`` x ``h`` original resized to long edge ``edge``."""
    if w >= h:
        return edge, round(h * edge / w)
    return round(w * edge / h), edge


def bucket_of(t: int) -> int:
    return t // BUCKET_SECONDS


__all__ = [
    "BUCKET_SECONDS",
    "LICENSES_2025",
    "NEW_LICENSE",
    "Owner",
    "Photo",
    "Universe",
    "bucket_of",
    "is_cc_url",
    "query_words",
    "scaled",
    "size_secret",
    "stable_hash",
]
