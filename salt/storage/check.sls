{#- The free-space check of the storage root, whichever backend writes below it. #}
{%- from "storage/map.jinja" import storage with context %}

include:
  - .user

storage-check-script-file-managed:
  file.managed:
    - name: {{ storage.check_script }}
    - source: salt://storage/files/ccmirror-storage-check
    - user: root
    - group: root
    - mode: "0755"

storage-check-unit-file-managed:
  file.managed:
    - name: {{ storage.check_unit_file }}
    - source: salt://storage/files/ccmirror-storage-check.service.jinja
    - template: jinja
    - context:
        storage: {{ storage | json }}
    - user: root
    - group: root
    - mode: "0644"

storage-check-service-running:
  service.running:
    - name: {{ storage.check_service }}
    - enable: True
    - require:
      - file: storage-root-file-directory
    - watch:
      - file: storage-check-unit-file-managed
      - file: storage-check-script-file-managed
