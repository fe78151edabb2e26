{%- from "common/map.jinja" import common with context %}

common-sshd-service-running:
  service.running:
    - name: {{ common.ssh.service }}
    - enable: True
    - reload: True
    - watch:
      - file: common-sshd-config-file-managed

common-timesyncd-service-running:
  service.running:
    - name: {{ common.time.service }}
    - enable: True
    - watch:
      - file: common-timesyncd-config-file-managed
