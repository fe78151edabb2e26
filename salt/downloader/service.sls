{%- from "downloader/map.jinja" import downloader with context %}
{%- from "ccmirror/map.jinja" import ccmirror with context %}

include:
  - ccmirror
  - .package
  - .config

downloader-unit-file-managed:
  file.managed:
    - name: {{ downloader.unit_file }}
    - source: salt://downloader/files/ccmirror-downloader.service.jinja
    - template: jinja
    - context:
        ccmirror: {{ ccmirror | json }}
        config_file: {{ downloader.config_file }}
    - user: root
    - group: root
    - mode: "0644"

downloader-service-running:
  service.running:
    - name: {{ downloader.service }}
    - enable: True
    - require:
      - pkg: downloader-tools-pkg-installed
      - file: downloader-spool-file-directory
    - watch:
      - file: downloader-unit-file-managed
      - file: downloader-config-file-managed
{%- if salt["pillar.get"]("site:storage_backend", "rsync") == "rsync" %}
      - file: downloader-ssh-key-file-managed
      - file: downloader-known-hosts-file-managed
{%- endif %}
      - cmd: ccmirror-package-cmd-run
      - cmd: ccmirror-package-refresh-cmd-run
