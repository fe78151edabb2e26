"""The fixed tables of the simulated Flickr and the pools its photos draw from: Flickr's
license table (2025) and the simulated new license, the license slots and their shares, the
size suffixes and which sizes have a secret of their own, the title vocabulary and owners'
names (awkward ones on purpose: markup, quotes, scripts, emoji)."""

from __future__ import annotations

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
ALL_SLOTS = tuple(range(N_SLOTS))
CUM_WEIGHTS = tuple(sum(SLOT_WEIGHTS[: i + 1]) for i in range(N_SLOTS))
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
SIZE_SALT = {
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
GIVEN_NAMES = (
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
FAMILY_NAMES = (
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
HANDLES = (
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
ODD_NAMES = (
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
NSID_SUFFIXES = ("N00", "N02", "N03", "N04", "N05", "N06", "N07", "N08")


def is_cc_url(url: str) -> bool:
    """True when a license URL is a Creative Commons license or public-domain tool."""
    return "creativecommons.org/licenses/" in url or "creativecommons.org/publicdomain/" in url
