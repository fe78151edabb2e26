"""`harvester flickr-auth`: the parser and body of the command that runs Flickr's OAuth flow
once for a harvester's key (harvester/cli.py adds it; the flow is
harvester/search/flickr_auth.py).

Interactive: it prints the URL to approve and reads the verifier Flickr shows from stdin.
Without a terminal (stdin at its end) it keeps the request token in `<out>.request` (0600) and
a second run with `--verifier CODE` finishes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ccmirror_common.cli import CommandError
from harvester.config import Settings
from harvester.search.flickr_auth import (
    Consumer,
    RequestToken,
    finish,
    read_consumer,
    read_private_yaml,
    start,
    write_private_yaml,
)


def add_parsers(commands) -> None:
    auth = commands.add_parser(
        "flickr-auth",
        help="run Flickr's OAuth flow once: write a 0600 token file for secrets.set_flickr_key",
    )
    auth.add_argument("--out", type=Path, required=True, help="the token file to write (YAML)")
    auth.add_argument(
        "--consumer-file",
        type=Path,
        help="0600 YAML {key:, secret:} (default: flickr.api_key and api_secret)",
    )
    auth.add_argument("--verifier", help="the code Flickr showed, for a pending request")
    auth.add_argument("--force", action="store_true", help="replace an existing --out file")


def cmd_flickr_auth(args: argparse.Namespace, settings: Settings) -> int:
    if args.out.exists() and not args.force:
        raise CommandError(f"{args.out} exists: pass --force to replace it")
    consumer = _consumer(args, settings)
    api_url = settings.flickr.api_url
    pending = args.out.with_name(args.out.name + ".request")
    if args.verifier:
        request, verifier = _pending_request(pending), args.verifier
    else:
        request, url = start(api_url, consumer)
        print(f"approve this key's access at:\n{url}", flush=True)
        print("verifier: ", end="", file=sys.stderr, flush=True)
        verifier = sys.stdin.readline().strip()
        if not verifier:
            write_private_yaml(pending, {"token": request.token, "secret": request.secret},
                               force=True)  # fmt: skip
            print(f"no verifier read: after approving, run with --out {args.out} --verifier CODE")
            return 0
    token = finish(api_url, consumer, request, verifier)
    write_private_yaml(args.out, token, force=args.force)
    pending.unlink(missing_ok=True)
    print(f"wrote {args.out} (0600): salt-run secrets.set_flickr_key minion=hv-N "
          f"from_file={args.out.resolve()}")  # fmt: skip
    return 0


def _consumer(args: argparse.Namespace, settings: Settings) -> Consumer:
    if args.consumer_file is not None:
        return read_consumer(args.consumer_file)
    if settings.flickr.api_key and settings.flickr.api_secret:
        return Consumer(settings.flickr.api_key, settings.flickr.api_secret)
    raise CommandError(
        "no consumer key and secret: pass --consumer-file (0600 YAML {key:, secret:}) or set "
        "flickr.api_key and flickr.api_secret"
    )


def _pending_request(path: Path) -> RequestToken:
    if not path.exists():
        raise CommandError(f"no pending request ({path}): run flickr-auth without --verifier")
    data = read_private_yaml(path)
    return RequestToken(str(data.get("token", "")), str(data.get("secret", "")))


COMMANDS = {"flickr-auth": cmd_flickr_auth}
