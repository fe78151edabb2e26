"""The photos of the simulated Flickr, bucket by bucket (pure Python, no HTTP).

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

from lab.sims.flickr.tables import (
    ALL_SLOTS,
    CC_SLOTS,
    CUM_WEIGHTS,
    EXOTIC_WORDS,
    FAMILY_NAMES,
    GIVEN_NAMES,
    HANDLES,
    N_SLOTS,
    NEW_LICENSE_FALLBACK,
    NEW_LICENSE_SLOT,
    NON_CC_SLOTS,
    NSID_SUFFIXES,
    ODD_NAMES,
    OWN_SECRET_SIZES,
    SIZE_SALT,
    SIZES,
    SLOT_WEIGHTS,
    VOCABULARY,
)

BUCKET_SECONDS = 600
ID_STRIDE = 1 << 20
DEFAULT_START = 1072915200  # 2004-01-01T00:00:00Z
MAX_NORMAL_PER_BUCKET = ID_STRIDE - 10_000  # room for hot spots: ids must stay per-bucket
_ASPECTS = (4 / 3, 4 / 3, 4 / 3, 3 / 2, 3 / 2, 16 / 9, 1.0, 5 / 4)
TITLE_POOL_SIZE = 8192
_ERA_65535 = 1527811200  # 2018-06-01: from here on server "65535", farm 66
_MAX_OLD_SERVER = 7900


def stable_hash(*parts: object) -> int:
    """A stable 64-bit integer from ``parts`` (independent of PYTHONHASHSEED)."""
    text = ":".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


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
class Plan:
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


class Buckets:
    """The photos of a simulated Flickr, generated lazily from ``seed`` bucket by bucket and
    cached (`lab.sims.flickr.universe.Universe` adds the searches over them)."""

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
            nsids.add(f"{rng.randrange(10_000_000, 200_000_000)}@{rng.choice(NSID_SUFFIXES)}")
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
            return ODD_NAMES[i % len(ODD_NAMES)]
        if r < 0.55:
            return f"{rng.choice(GIVEN_NAMES)} {rng.choice(FAMILY_NAMES)}"
        if r < 0.85:
            return f"{rng.choice(GIVEN_NAMES).lower()}{rng.choice(HANDLES)}{rng.randrange(100)}"
        return f"{rng.choice(GIVEN_NAMES)}'s {rng.choice(HANDLES)}"

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

    def _make_plan(self, b: int) -> Plan:
        rng = random.Random(stable_hash(self.seed, "plan", b))
        n = self._normal_count(rng)
        normal = [0] * N_SLOTS
        for s in rng.choices(ALL_SLOTS, cum_weights=CUM_WEIGHTS, k=n):
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
        return Plan(tuple(normal), None if hot is None else tuple(hot), kind, hot_second)

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

    def _license_of(self, slot: int, new_license: bool) -> int:
        if slot == NEW_LICENSE_SLOT and not new_license:
            return NEW_LICENSE_FALLBACK
        return slot

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

    def _stamp_times(self, plan: Plan, base: int, rng: random.Random) -> list[tuple[int, int]]:
        """(upload second, slot) for every photo of the bucket, sorted by second."""
        slots = [s for s in ALL_SLOTS for _ in range(plan.normal[s])]
        rng.shuffle(slots)
        r = rng.random
        stamped = [(base + int(r() * BUCKET_SECONDS), s) for s in slots]
        if plan.kind == "second":
            hs = plan.hot_second
            stamped = [
                (t if t != hs else base + (t - base + 1) % BUCKET_SECONDS, s) for t, s in stamped
            ]
            hot = [s for s in ALL_SLOTS for _ in range(plan.hot[s])]  # type: ignore[index]
            rng.shuffle(hot)
            stamped.extend((hs, s) for s in hot)
        elif plan.kind == "window":
            hot = [s for s in ALL_SLOTS for _ in range(plan.hot[s])]  # type: ignore[index]
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
        return SIZE_SALT[key] ^ self._secret_salt


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
