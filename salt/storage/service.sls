{#- The rsync target's sshd (site:storage_backend rsync). #}
{%- from "storage/map.jinja" import storage with context %}

include:
  - .package
  - .user
  - .config

storage-sshd-unit-file-managed:
  file.managed:
    - name: {{ storage.unit_file }}
    - source: salt://storage/files/ccmirror-storage-sshd.service.jinja
    - template: jinja
    - context:
        storage: {{ storage | json }}
    - user: root
    - group: root
    - mode: "0644"

storage-sshd-service-running:
  service.running:
    - name: {{ storage.service }}
    - enable: True
    - require:
      - pkg: storage-tools-pkg-installed
      - user: storage-user-user-present
{%- for subdir in storage.subdirs %}
      - file: storage-{{ subdir }}-file-directory
{%- endfor %}
    - watch:
      - file: storage-sshd-unit-file-managed
      - file: storage-sshd-config-file-managed
      - file: storage-host-key-file-managed
