{%- from "queue/map.jinja" import queue with context %}
{%- from "ccmirror/map.jinja" import ccmirror with context %}

include:
  - ccmirror
  - db
  - .config

queue-unit-file-managed:
  file.managed:
    - name: {{ queue.unit_file }}
    - source: salt://queue/files/ccmirror-queue.service.jinja
    - template: jinja
    - context:
        ccmirror: {{ ccmirror | json }}
        queue: {{ queue | json }}
    - user: root
    - group: root
    - mode: "0644"

queue-service-running:
  service.running:
    - name: {{ queue.service }}
    - enable: True
    - require:
      - cmd: db-migrate-cmd-run
    - watch:
      - file: queue-unit-file-managed
      - file: queue-config-file-managed
      - cmd: ccmirror-package-cmd-run
      - cmd: ccmirror-package-refresh-cmd-run
