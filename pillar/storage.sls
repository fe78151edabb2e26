# The storage server; its host key and the downloaders' keys come from the private root.
storage:
  min_free_mb: 10240
