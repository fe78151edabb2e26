"""Progress of long batches (harvest, download, reconcile, audit) posted to the operator's
Slack-format webhook, the one Alertmanager posts alerts to: pillar ``monitoring:webhook_url``
(the private root's settings/master.sls) and optionally ``prometheus:alertmanager:channel``.
Runners reach it as ``__utils__["batch_notify.*"]`` (the master's ``utils_dirs``).

The URL is read from the pillar the master compiles for its own minion: pillar/top.sls gives
the master's settings to ``master*`` ids only, so the first accepted minion key matching
``master*`` (by id) is compiled for, as ``salt-run pillar.show_pillar`` compiles it. Not the
master's own ``id`` option (``<host>_master`` by default, no minion's id), and not a call to
that minion: its pillar in memory may be older, and the URL would travel through the job
cache. Read once per ``CACHE_SECONDS`` (a run's posts reuse it; a long-lived master process
sees a changed URL within minutes).

The URL is a secret: it is never logged, returned or put in an error's text. A post that
fails is a warning in the log and ``"failed: <reason>"`` for the runner's return; it never
fails the batch. No URL: nothing is posted, silently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import requests

log = logging.getLogger(__name__)

__virtualname__ = "batch_notify"
__load__ = ["post", "with_notice", "wait_notices", "webhook"]

MASTER_MINIONS = "master*"  # pillar/top.sls's glob for the master's own settings
POST_TIMEOUT = 10
CACHE_SECONDS = 300
# until= of batch.wait => the stage's name in the posted lines, and what is counted.
STAGES = {"harvested": ("harvest", "search tasks"), "downloaded": ("download", "photos")}

_CACHE: dict[str, tuple[float, str, str]] = {}  # conf_file -> (read at, url, channel)


def __virtual__():
    return __virtualname__


def webhook(opts: dict) -> tuple[str, str]:
    """(url, channel) from the master minion's pillar; ("", "") when none is set."""
    key = str(opts.get("conf_file"))
    cached = _CACHE.get(key)
    if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1], cached[2]
    pillar = _master_pillar(opts)
    url = (pillar.get("monitoring") or {}).get("webhook_url") or ""
    alertmanager = (pillar.get("prometheus") or {}).get("alertmanager") or {}
    channel = alertmanager.get("channel") or ""
    _CACHE[key] = (time.monotonic(), str(url), str(channel))
    return str(url), str(channel)


def _master_pillar(opts: dict) -> dict:
    """The pillar compiled for the first accepted ``master*`` minion ({} when there is none or
    it does not compile: the errors are not logged, as they may quote the secret's file)."""
    import salt.key  # the master's side only: minions load _utils/ too
    import salt.pillar
    import salt.utils.minions

    accepted = salt.key.get_key(opts).list_status("accepted").get("minions", [])
    minions = sorted(m for m in accepted if m.startswith(MASTER_MINIONS.rstrip("*")))
    if not minions:
        log.info("batch_notify: no accepted %s minion: nothing to post to", MASTER_MINIONS)
        return {}
    _, grains, _ = salt.utils.minions.get_minion_data(minions[0], opts)
    pillar = salt.pillar.Pillar(opts, grains or {}, minions[0], "base").compile_pillar()
    if pillar.get("_errors"):
        log.warning("batch_notify: %s's pillar does not compile: nothing posted", minions[0])
        return {}
    return pillar


def post(opts: dict, text: str) -> str:
    """Post `text` to the webhook: "posted", "off" (no URL set) or "failed: <reason>"."""
    try:
        url, channel = webhook(opts)
    except Exception as error:  # noqa: BLE001 (a notice never fails the batch)
        return _failure(f"cannot read the webhook from pillar ({error.__class__.__name__})")
    if not url:
        return "off"
    payload = {"text": text, **({"channel": channel} if channel else {})}
    hidden = _Hide(url)
    quiet = logging.getLogger("urllib3.connectionpool")  # logs the path at debug level
    quiet.addFilter(hidden)
    try:
        answer = requests.post(url, json=payload, timeout=POST_TIMEOUT)
    except requests.RequestException as error:
        return _failure(_reason(error))
    finally:
        quiet.removeFilter(hidden)
    if not 200 <= answer.status_code < 300:
        return _failure(f"HTTP {answer.status_code}")
    return "posted"


def with_notice(opts: dict, ret: dict, label: str) -> dict:
    """`ret`, a runner's return, after posting its end as `label: <comment>` (its summary) or
    `label: failed: <error>`; with ``notify`` when the post failed."""
    said = ret.get("comment") if ret.get("result") else f"failed: {ret.get('error')}"
    status = post(opts, f"{label}: {said}")
    return {**ret, "notify": status} if status.startswith("failed") else ret


def _failure(reason: str) -> str:
    log.warning("batch_notify: the webhook post failed: %s", reason)
    return f"failed: {reason}"


def _reason(error: requests.RequestException) -> str:
    """Why a post failed, in words that cannot hold the URL: requests' and urllib3's own
    texts quote it, so only the class and the innermost system error are kept."""
    if isinstance(error, requests.Timeout):
        return f"no answer in {POST_TIMEOUT}s"
    cause: BaseException | None = error
    for _ in range(8):  # requests' error wraps urllib3's, which wraps the socket's
        if cause is None:
            break
        if isinstance(cause, OSError) and cause.strerror:
            return f"cannot connect: {cause.strerror}"
        cause = getattr(cause, "reason", None) or cause.__cause__ or cause.__context__
    return error.__class__.__name__


class _Hide(logging.Filter):
    """Drops a log record that mentions the URL's path (the secret part of a webhook)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.secret = url.split("://", 1)[-1].partition("/")[2] or url

    def filter(self, record: logging.LogRecord) -> bool:
        return self.secret not in record.getMessage()


class WaitNotices:
    """batch.wait's posts: a line when it starts (what is left), one every `every` seconds
    (0: none between), and one at the end; each prefixed by the stage (``harvest:``)."""

    def __init__(self, opts: dict, until: str, every: float, duration: Callable[[float], str]):
        self.opts, self.every, self.duration = opts, every, duration
        self.stage, self.unit = STAGES[until]
        self.started = self.posted_at = time.monotonic()
        self.first, self.failed = True, ""

    def _post(self, text: str) -> None:
        status = post(self.opts, f"{self.stage}: {text}")
        self.failed = status if status.startswith("failed") else self.failed
        self.posted_at = time.monotonic()

    def _left(self, left: int | None) -> str:
        return f"{'?' if left is None else f'{left:,}'} {self.unit} left"

    def update(self, left: int | None) -> None:
        """After each poll: the start line on the first, then one every `every` seconds."""
        if self.first:
            self.first = False
            self._post(f"waiting until {self.stage} is done: {self._left(left)}")
        elif self.every and time.monotonic() - self.posted_at >= self.every:
            elapsed = self.duration(time.monotonic() - self.started)
            self._post(f"{self._left(left)} after {elapsed}")

    def end(self, ret: dict, left: int | None) -> dict:
        """The end line (finished, or timed out with what is left); `ret` with ``notify``
        when any post failed."""
        elapsed = self.duration(time.monotonic() - self.started)
        if left == 0:
            self._post(f"finished after {elapsed}")
        else:
            self._post(f"timed out after {elapsed}: {self._left(left)}")
        return {**ret, "notify": self.failed} if self.failed else ret


def wait_notices(
    opts: dict, until: str, every: Any, duration: Callable[[float], str]
) -> WaitNotices:
    """batch.wait's notices for `until`, posting every `every` seconds (ValueError when
    `every` is not a number of seconds from 0 to a day)."""
    try:
        seconds = float(every)
    except (TypeError, ValueError):
        seconds = -1.0
    if isinstance(every, bool) or not 0 <= seconds <= 86400:
        raise ValueError(
            f"notify_every must be a number of seconds from 0 (only start and end) to 86400,"
            f" not {every!r}"
        )
    return WaitNotices(opts, until, seconds, duration)
