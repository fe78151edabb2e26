"""The lab: the whole fleet on one Linux machine, for `make lab` and the tests (the
`ccmirror-lab` distribution, lab/pyproject.toml; never on a droplet).

    lab/fleet/      the machinery: droplets in namespaces, their salt master, faults
    lab/sims/       what cannot run here: Flickr, DigitalOcean, the image hosts
    lab/processes/  real services started on loopback: MariaDB, the queue, storage's sshd
    lab/mission/    the mission end to end, and the check of the mirror it made
"""

from pathlib import Path

# The checkout the lab runs from and serves to its salt master (the lab is always run from
# one: `make deps` installs it editable).
CHECKOUT = Path(__file__).resolve().parent.parent
