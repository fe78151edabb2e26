"""The push's SigV4 signature against botocore's, CPU per signed PUT head, one process.

Each round signs the same N keys, alternating the two, as `ObjectWriter.signed_put` does
(URL, x-amz-checksum-sha256, the signature, Content-Length): the downloader's own signer
(downloader/s3/sigv4.py) and botocore's `S3SigV4Auth` told the payload's digest (how the push
signed before it). Process CPU time, so other load on the machine inflates both alike.

    .venv/bin/python bench/s3_signing.py [--puts 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from botocore.auth import S3SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

from downloader.s3.client import ObjectWriter  # noqa: E402
from downloader.s3.target import S3Target  # noqa: E402

TARGET = S3Target("http://127.0.0.1:8333", "images", "us-east-1", "AKBENCHBENCH", "s" * 40)


class KnownDigestSigner(S3SigV4Auth):
    def payload(self, request: AWSRequest) -> str:
        return request.context["payload_sha256"]


def botocore_put(signer: KnownDigestSigner):
    def signed_put(key: str, digest: str, size: int) -> tuple[str, dict[str, str]]:
        url = f"{TARGET.base_url}/{TARGET.bucket}/{quote(key, safe='/~')}"
        checksum = base64.b64encode(bytes.fromhex(digest)).decode()
        request = AWSRequest(method="PUT", url=url, headers={"x-amz-checksum-sha256": checksum})
        request.context["payload_sha256"] = digest
        signer.add_auth(request)
        headers = dict(request.headers.items())
        headers["Content-Length"] = str(size)
        return url, headers

    return signed_put


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--puts", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    signers = {
        "own": ObjectWriter(TARGET).signed_put,
        "botocore": botocore_put(
            KnownDigestSigner(Credentials(TARGET.access_key, TARGET.secret_key), "s3", "us-east-1")
        ),
    }
    digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(args.puts)]
    keys = [f"images/{i % 97:02x}/{i % 89:02x}/{1_000_000 + i}.jpg" for i in range(args.puts)]
    results: dict[str, list[float]] = {name: [] for name in signers}
    for run in range(args.repeat):
        for name, signed_put in signers.items():
            started = time.process_time()
            for key, digest in zip(keys, digests, strict=True):
                signed_put(key, digest, 12_345)
            results[name].append((time.process_time() - started) / args.puts * 1e6)
            print(f"run {run + 1} {name:9} {results[name][-1]:6.1f} µs per PUT", flush=True)
    own, theirs = statistics.median(results["own"]), statistics.median(results["botocore"])
    print(f"medians: own {own:.1f} µs, botocore {theirs:.1f} µs: own/botocore {own / theirs:.2f}")


if __name__ == "__main__":
    main()
