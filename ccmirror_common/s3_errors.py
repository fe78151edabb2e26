"""botocore's errors as one line of the caller's own error: what was being done, and S3's
reason (`Code: Message`, or botocore's own words when no answer came). The S3 audit
(harvester/audit/s3_listing.py) and the lab's mirror check (lab/mission/bucket_scan.py) read
buckets with boto3 and say a failure so.

Standard library at import, as all of ccmirror_common: botocore is looked up only when an
error passes, and an error can only be botocore's if botocore is loaded (`harvester` without
its S3 extra still imports this).

    with s3_errors("cannot list s3://images", StorageAuditError):
        ...
"""

from __future__ import annotations

import sys
from types import TracebackType

__all__ = ["s3_errors", "s3_reason"]


def s3_reason(error: BaseException) -> str | None:
    """S3's reason for a botocore error, or None when `error` is none of botocore's."""
    exceptions = sys.modules.get("botocore.exceptions")
    if exceptions is None:
        return None
    if isinstance(error, exceptions.ClientError):
        detail = error.response.get("Error", {})
        return f"{detail.get('Code', '?')}: {detail.get('Message') or 'refused'}"
    if isinstance(error, exceptions.BotoCoreError):
        return str(error)
    return None


class s3_errors:  # noqa: N801 - used as a `with` statement, like contextlib's
    """Raise botocore's errors in the block as one `error_type`(f"{what}: {reason}"), from
    None (the traceback and the request are no use to an operator); others pass unchanged."""

    def __init__(self, what: str, error_type: type[Exception]) -> None:
        self.what = what
        self.error_type = error_type

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        _traceback: TracebackType | None,
    ) -> bool:
        reason = None if error is None else s3_reason(error)
        if reason is None:
            return False
        raise self.error_type(f"{self.what}: {reason}") from None
