{%- from "master/map.jinja" import master with context %}

master-config-file-managed:
  file.managed:
    - name: {{ master.config_file }}
    - source: salt://master/files/ccmirror.conf.jinja
    - template: jinja
    - context:
        master: {{ master | json }}
    - user: root
    - group: root
    - mode: "0644"
    - makedirs: True

# Secrets live here, readable by root (the master) alone.
master-private-pillar-file-directory:
  file.directory:
    - name: {{ master.private_pillar }}
    - user: root
    - group: root
    - mode: "0700"
    - makedirs: True

master-wheelhouse-file-directory:
  file.directory:
    - name: {{ master.dist_root }}/wheelhouse
    - user: root
    - group: root
    - mode: "0755"
    - makedirs: True

# Minions sync the checkout's execution modules (`ccmirror.*`) from salt://_modules/ and what
# they share with the runners from salt://_utils/: served through the dist root, as the
# checkout's top level (pillar/, tests/) is no minion's.
master-modules-file-symlink:
  file.symlink:
    - name: {{ master.dist_root }}/_modules
    - target: {{ master.checkout }}/_modules
    - require:
      - file: master-wheelhouse-file-directory

master-utils-file-symlink:
  file.symlink:
    - name: {{ master.dist_root }}/_utils
    - target: {{ master.checkout }}/_utils
    - require:
      - file: master-wheelhouse-file-directory

master-build-script-file-managed:
  file.managed:
    - name: {{ master.build_script }}
    - source: salt://master/files/ccmirror-build-wheelhouse.jinja
    - template: jinja
    - context:
        master: {{ master | json }}
    - user: root
    - group: root
    - mode: "0755"
