{#- One unit per SeaweedFS server, each bound to this node's private address: a master on the
    masters' nodes, then a volume server, the filer and the S3 gateway on every node. #}
{%- from "storage/map.jinja" import storage with context %}
{%- from "storage/seaweedfs/map.jinja" import weed with context %}
{%- set port = weed.ports %}
{%- set bind = "-ip=" ~ weed.address ~ " -ip.bind=" ~ weed.address %}
{%- set servers = [] %}
{%- if weed.is_master %}
{%-   set peers = weed.master_list if weed.masters | length > 1 else "none" %}
{%-   do servers.append({"name": "master", "after": [], "wait_for_db": False, "reload": False,
        "exec": weed.weed ~ " master " ~ bind ~ " -port=" ~ port.master ~ " -mdir=" ~ weed.master_dir
                ~ " -peers=" ~ peers ~ " -defaultReplication=" ~ weed.replication
                ~ " -volumeSizeLimitMB=" ~ weed.volume_size_limit_mb ~ " -telemetry=false"}) %}
{%- endif %}
{%- do servers.append({"name": "volume", "after": ["ccmirror-weed-master"] if weed.is_master else [],
      "wait_for_db": False, "reload": False,
      "exec": weed.weed ~ " volume " ~ bind ~ " -port=" ~ port.volume ~ " -dir=" ~ weed.data_dir
              ~ " -max=" ~ weed.max_volumes ~ " -mserver=" ~ weed.master_list}) %}
{#- The shared store's first filer: the first master's; the others wait for it (the unit). #}
{%- set makes_store = weed.address == weed.masters[0] %}
{%- do servers.append({"name": "filer", "after": ["ccmirror-weed-volume"],
      "wait_for_db": weed.filer_store == "mysql2",
      "wait_for_store": weed.filer_store == "mysql2" and not makes_store,
      "reload": False,
      "exec": weed.weed ~ " -config_dir=" ~ weed.config_dir ~ " filer " ~ bind ~ " -port=" ~ port.filer
              ~ " -master=" ~ weed.master_list ~ " -defaultReplicaPlacement=" ~ weed.replication}) %}
{%- do servers.append({"name": "s3", "after": ["ccmirror-weed-filer"], "wait_for_db": False,
      "reload": True,
      "exec": weed.weed ~ " s3 -ip.bind=" ~ weed.address ~ " -port=" ~ port.s3 ~ " -filer=" ~ weed.filer_address
              ~ " -config=" ~ weed.config_dir ~ "/s3.json -port.iceberg=0 -port.lance=0"}) %}

include:
  - storage.volume  # the data volume: the directories and units require its mount
  - .package
  - .config
{%- for server in servers %}

storage-weed-{{ server.name }}-unit-file-managed:
  file.managed:
    - name: /etc/systemd/system/ccmirror-weed-{{ server.name }}.service
    - source: salt://storage/seaweedfs/files/weed.service.jinja
    - template: jinja
    - context:
        weed: {{ weed | json }}
        server: {{ server.name }}
        after: {{ server.after | json }}
        exec_start: {{ server.exec | json }}
        wait_for_db: {{ server.wait_for_db }}
        wait_for_store: {{ server.get("wait_for_store", False) }}
        reload: {{ server.reload }}
    - user: root
    - group: root
    - mode: "0644"

storage-weed-{{ server.name }}-service-running:
  service.running:
    - name: ccmirror-weed-{{ server.name }}
    - enable: True
{%-   if server.reload %}
    - reload: True
{%-   endif %}
    - require:
      - cmd: storage-weed-package-cmd-run
      - file: storage-weed-data-dir-file-directory
      - file: storage-weed-master-dir-file-directory
{%-   if storage.volume_device %}
      - mount: storage-volume-root-mount-mounted  # volume.sls: the data volume first
{%-   endif %}
{%-   for unit in server.after %}
      - service: storage-weed-{{ unit | replace("ccmirror-weed-", "") }}-service-running
{%-   endfor %}
    - watch:
      - cmd: storage-weed-package-cmd-run  # a new weed
      - file: storage-weed-{{ server.name }}-unit-file-managed
{%-   if server.name == "filer" %}
      - file: storage-weed-filer-config-file-managed
{%-     if weed.filer_store == "mysql2" %}
      - file: storage-weed-filer-login-file-managed
{%-     endif %}
{%-   elif server.name == "s3" %}
      - file: storage-weed-s3-config-file-managed
{%-   endif %}
{%-   if weed.is_backup and server.name == "filer" %}
      - cmd: storage-weed-filer-guard-cmd-run  # the write key it checks
{%-   endif %}
{%- endfor %}
{%- if weed.is_backup %}

{#- The gateway signs its filer requests with the write key, read at start only (its reload,
    SIGHUP, re-reads the identities alone): a gateway already running when the key is made
    (a node from before the key) restarts; on a new node it starts after, with it. #}
storage-weed-s3-restart-cmd-run:
  cmd.run:
    - name: systemctl try-restart ccmirror-weed-s3
    - onchanges:
      - cmd: storage-weed-filer-guard-cmd-run
    - require_in:
      - service: storage-weed-s3-service-running
{%- endif %}
