"""The `images` catalog: every source merged into it (`harvester reconcile`), and what the
harvest has done, read from the database (`harvester status`)."""
