"""`downloader` command line: the droplet side (issue #5 builds it out)."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="downloader",
        description="Lease image URLs from the queue, fetch, verify and push them to storage.",
    )
    parser.parse_args(argv)
    parser.print_help()
    return 0
