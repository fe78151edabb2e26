"""Apply highstate to minions at once and show it state by state: run by the salt venv's
python (it imports salt), not the project's.

    python lab/fleet/highstate.py --config-dir DIR --out FILE [--timeout SECONDS] ID [ID...]

One line per state as the minions report it (minion, its count of states, result, state id)
on stderr, from the `salt/job/<jid>/prog/...` events minions fire with `state_events: True`;
then every minion's full return as JSON in FILE (`{}` for a minion that did not return; a
file, as the returns outgrow a pipe's buffer while the caller still reads the progress).
Exit 0 when every minion returned, 1 otherwise (the JSON says which).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import salt.client
import salt.config
import salt.utils.event

SYMBOL = {True: "ok", False: "FAILED", None: "would change"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-dir", required=True)
    parser.add_argument("--out", required=True, help="where the returns go, as JSON")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("ids", nargs="+")
    args = parser.parse_args()
    opts = salt.config.client_config(os.path.join(args.config_dir, "master"))
    returns = highstate(opts, args.ids, args.timeout)
    with open(args.out, "w") as out:
        json.dump(returns, out)
    return 0 if all(returns.get(minion) for minion in args.ids) else 1


def highstate(opts: dict, ids: list[str], timeout: float) -> dict[str, object]:
    """Publish state.highstate to `ids` with the event bus already listened to, so no early
    event is missed; collect progress and returns until all have returned or time is up."""
    client = salt.client.LocalClient(mopts=opts)
    with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True) as event:
        job = client.run_job(ids, "state.highstate", tgt_type="list", timeout=timeout)
        if not job or not job.get("jid"):
            raise SystemExit(f"salt: the master did not take the job ({job!r})")
        jid = job["jid"]
        returns: dict[str, object] = {}
        deadline = time.monotonic() + timeout
        while set(ids) - set(returns) and time.monotonic() < deadline:
            message = event.get_event(wait=1, tag=f"salt/job/{jid}/", full=True)
            if message:
                show(message["tag"], message["data"], returns)
    return {minion: returns.get(minion, {}) for minion in ids}


def show(tag: str, data: dict, returns: dict[str, object]) -> None:
    parts = tag.split("/")  # salt/job/<jid>/prog/<id>/<n> or salt/job/<jid>/ret/<id>
    if parts[3] == "prog":
        chunk = data["data"]["ret"]
        result = SYMBOL.get(chunk.get("result"), str(chunk.get("result")))
        number = chunk.get("__run_num__", 0) + 1
        count = f"{number}/{max(number, data['data'].get('len', 0))}"  # + watch/listen runs
        say(f"  {parts[4]:<10} {count:>7} {result:<6} {chunk.get('__id__', chunk.get('name'))}")
    elif parts[3] == "ret":
        returns[parts[4]] = data.get("return")
        say(f"  {parts[4]:<10} returned (retcode {data.get('retcode')})")


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
