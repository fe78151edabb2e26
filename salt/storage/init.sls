{#- The storage role: the site's backend (pillar site:storage_backend) on the storage root,
    and its free-space check. SeaweedFS (seaweedfs): the object store the downloaders PUT to
    through its S3 gateways. rsync (the default): one sshd whose downloader keys may only
    run rrsync -wo, the second backend a site may keep. The root is on the node's data volume
    when the site names one (volume.sls). #}
{%- set backend = salt["pillar.get"]("site:storage_backend", "rsync") %}
include:
  - .volume
  - .package
  - .user
  - .check
{%- if backend == "rsync" %}
  - .config
  - .service
{%- else %}
  - .seaweedfs
{%- endif %}
