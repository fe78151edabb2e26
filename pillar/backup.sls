# The backup cluster's node (bk-*, #20): SeaweedFS as the storage formula runs it, one node of
# its own (salt/storage/seaweedfs/map.jinja), and `weed filer.backup` filling it from the main
# cluster's filer (salt/backup). Its gateway's identities come from the private root; a site
# changes SeaweedFS's settings for the backup alone in settings/backup.sls (storage:seaweedfs).
storage:
  min_free_mb: 10240
