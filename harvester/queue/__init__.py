"""The download queue (`harvester serve`): leases over the catalog (`leases`), its HTTP
service (`service`, with `guard`, `tokens`, `status`, `metrics` and the page for people)."""
