{#- The backup role: SeaweedFS, one node of its own (the storage formula's states, with the
    backup cluster's settings: storage/seaweedfs/map.jinja), and `weed filer.backup` into its
    bucket. #}
include:
  - storage.seaweedfs
  - .service
