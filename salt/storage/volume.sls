{#- The storage root on this node's data volume: the device pillar site:storage_volumes names
    for it (DigitalOcean's /dev/disk/by-id/scsi-0DO_Volume_<name>, from Terraform's
    storage_volumes output or fleet.up role=storage). A filesystem is made only when the
    device carries no signature at all (blkid -p exits 2): one with a filesystem, a partition
    table or anything else is never formatted over. Mounted at the root with an fstab entry
    (nofail) before SeaweedFS's directories and units (they require the mount). #}
{%- from "storage/map.jinja" import storage with context %}
{%- set device = storage.volume_device %}
{%- if device %}

storage-volume-device-file-exists:
  file.exists:
    - name: {{ device }}

storage-volume-filesystem-cmd-run:
  cmd.run:
    - name: mkfs.{{ storage.volume_fs }} -q -L {{ storage.volume_label }} {{ device }}
    - onlyif: blkid -p {{ device }}; test $? -eq 2
    - require:
      - file: storage-volume-device-file-exists

storage-volume-root-mount-mounted:
  mount.mounted:
    - name: {{ storage.root }}
    - device: {{ device }}
    - fstype: {{ storage.volume_fs }}
    - opts: {{ storage.volume_mount_opts }}
    - pass_num: 2
    - persist: True
    - mkmnt: True
    - config: {{ storage.fstab }}
    - require:
      - cmd: storage-volume-filesystem-cmd-run
{%- else %}
{#- No device named for this node (the lab, whose storage droplets are containers, or a
    site on Spaces): nothing to mount; the root stays on the root disk. #}
{%- endif %}
