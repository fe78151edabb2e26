"""Re-checks of stored photos (`harvester recheck`) and their flags (`harvester flags`)."""
