"""`harvester takedown add|list|apply|replay`: the parsers and bodies of the takedown commands
(harvester/cli.py adds them). `add` and `list` need only the database; `apply` and `replay`
need the bucket and a key in the settings' `storage:` (on db-1 the audit's,
/etc/ccmirror/audit.yaml)."""

from __future__ import annotations

import argparse
import getpass
from datetime import UTC, datetime

from ccmirror_common import cli
from ccmirror_common.cli import CommandError, non_negative_int
from harvester.config import Settings
from harvester.migrate import open_database


def add_parsers(commands) -> None:
    takedown = commands.add_parser(
        "takedown", help="withdraw a photo or an owner's photos for good; list; clear storage"
    )
    actions = takedown.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    add = actions.add_parser("add", help="record a takedown and take its photos out of the queue")
    add.add_argument("--photo", type=_photo_id, help="a Flickr photo id (recorded if unknown)")
    add.add_argument("--owner", help="a Flickr owner NSID (12345678@N00): all their photos")
    add.add_argument("--reason", required=True, help="why (a complaint's reference)")
    add.add_argument("--by", default=None, help="who asks (default: this user)")
    cli.add_json_option(add, "print the result as JSON")
    listing = actions.add_parser("list", help="every takedown with its logged steps")
    cli.add_json_option(listing, "print the list as JSON")
    apply = actions.add_parser(
        "apply", help="move taken-down photos' objects out of images/ (into takedown/)"
    )
    apply.add_argument("--recheck", action="store_true",
                       help="look at every taken-down photo, not only those due")  # fmt: skip
    apply.add_argument("--purge", action="store_true",
                       help="also remove images/ versions (admin key only)")  # fmt: skip
    apply.add_argument("--by", default=None, help="who runs it (default: this user)")
    apply.add_argument("--samples", type=non_negative_int, default=20, help="keys named (20)")
    cli.add_json_option(apply, "print the result as JSON")
    replay = actions.add_parser(
        "replay",
        help="add back the takedowns the bucket records and the catalog lacks (after a"
        " catalog restore), then apply every takedown",
    )
    replay.add_argument("--by", default=None, help="who runs it (default: this user)")
    replay.add_argument("--samples", type=non_negative_int, default=20, help="keys named (20)")
    replay.set_defaults(recheck=False, purge=False)
    cli.add_json_option(replay, "print the result as JSON")


def _photo_id(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"not a Flickr photo id: {text!r}")
    return int(text)


def cmd_takedown(args: argparse.Namespace, settings: Settings) -> int:
    actions = {"add": _add, "list": _list, "apply": _apply, "replay": _apply}
    return actions[args.action](args, settings)


def _add(args: argparse.Namespace, settings: Settings) -> int:
    from harvester.takedown.requests import TakedownError, add_takedown, checked_request

    try:  # a bad request fails before the database is opened
        request = checked_request(
            args.photo, args.owner, args.reason, _user() if args.by is None else args.by
        )
    except TakedownError as error:
        raise CommandError(str(error)) from None
    conn = open_database(settings.db_url)
    try:
        added = add_takedown(conn, request, datetime.now(UTC).replace(tzinfo=None))
    finally:
        conn.close()
    cli.print_state(args, added.as_dict(), lambda state: state["summary"])
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from harvester.takedown.requests import format_takedowns, list_takedowns

    conn = open_database(settings.db_url)
    try:
        found = list_takedowns(conn)
    finally:
        conn.close()
    cli.print_state(args, found, format_takedowns)
    return 0


def _apply(args: argparse.Namespace, settings: Settings) -> int:
    """`apply`: the requests into the bucket's ledger, then the due photos' objects moved.
    `replay` first adds back the ledger's requests the catalog lacks (a restored backup)."""
    from harvester.audit.s3_listing import StorageAuditError, client_for
    from harvester.takedown.ledger import record_requests, replay_requests
    from harvester.takedown.storage import TakedownStorageError, apply_takedowns

    replay = args.action == "replay"
    try:
        client = client_for(settings.storage)  # missing settings fail before the database
        conn = open_database(settings.db_url)
        try:
            state = {}
            if replay:  # before the apply: the photos it takes down are due at once
                state["replay"] = replay_requests(conn, client, settings.storage).as_dict()
            recorded = record_requests(conn, client, settings.storage)
            applied = apply_takedowns(
                conn, client, settings.storage, _user() if args.by is None else args.by,
                recheck=args.recheck, purge=args.purge, samples=args.samples,
            )  # fmt: skip
        finally:
            conn.close()
    except (StorageAuditError, TakedownStorageError) as error:
        said = str(error).replace("the S3 audit needs", f"takedown {args.action} needs")
        raise CommandError(said) from None
    state |= applied.as_dict() | {"requests_recorded": recorded}
    state["summary"] = "; ".join(
        [*([state["replay"]["summary"]] if replay else []), state["summary"],
         f"{recorded:,} requests recorded in the bucket"]
    )  # fmt: skip
    cli.print_state(args, state, lambda shown: shown["summary"])
    return 0


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


COMMANDS = {"takedown": cmd_takedown}
