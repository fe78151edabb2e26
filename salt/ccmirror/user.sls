{%- from "ccmirror/map.jinja" import ccmirror with context %}

ccmirror-service-group-group-present:
  group.present:
    - name: {{ ccmirror.group }}
    - system: True

ccmirror-service-user-user-present:
  user.present:
    - name: {{ ccmirror.user }}
    - gid: {{ ccmirror.group }}
    - home: {{ ccmirror.home }}
    - createhome: True
    - shell: /usr/sbin/nologin
    - system: True
    - require:
      - group: ccmirror-service-group-group-present

ccmirror-config-dir-file-directory:
  file.directory:
    - name: {{ ccmirror.config_dir }}
    - user: root
    - group: {{ ccmirror.group }}
    - mode: "0750"
    - require:
      - group: ccmirror-service-group-group-present
