"""The storage audit's database side (`harvester audit-storage`): a storage inventory
compared with the catalog, the result recorded in `storage_audits`."""
