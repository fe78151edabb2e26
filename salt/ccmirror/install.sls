{#- ccmirror[<the minion's extras>]==<pillar version> into a venv, from a local copy of the
    master's wheelhouse, with no index: the same path offline (the lab) and online, one
    version fleet-wide. Each role's pillar names its extra (ccmirror:extras:<role>): a
    downloader gets none of the queue's web stack. #}
{%- from "ccmirror/map.jinja" import ccmirror with context %}
{%- set pip = ccmirror.venv ~ "/bin/pip" %}
{%- set extras = ccmirror.extras.values() | sum(start=[]) | unique | sort %}
{%- set requirement = "ccmirror" ~ ("[" ~ extras | join(",") ~ "]" if extras else "") ~ "==" ~ ccmirror.version %}
{%- set pip_install = pip ~ " install --quiet --disable-pip-version-check --no-index --find-links " ~ ccmirror.wheelhouse %}

ccmirror-wheelhouse-file-recurse:
  file.recurse:
    - name: {{ ccmirror.wheelhouse }}
    - source: {{ ccmirror.wheelhouse_source }}
    - clean: True
    - user: root
    - group: root
    - dir_mode: "0755"
    - file_mode: "0644"
    - include_pat: "*.whl"

ccmirror-venv-cmd-run:
  cmd.run:
    - name: {{ ccmirror.python }} -m venv {{ ccmirror.venv }}
    - creates: {{ ccmirror.venv }}/bin/python

# First install, version changes and a new role's extra: skipped while the venv holds the
# pillar's version with every requirement of the minion's extras.
ccmirror-package-cmd-run:
  cmd.run:
    - name: {{ pip_install }} '{{ requirement }}'
    - unless: {{ ccmirror.venv }}/bin/python -m ccmirror_common.installed {{ ([ccmirror.version] + extras) | join(" ") }}
    - require:
      - cmd: ccmirror-venv-cmd-run
      - file: ccmirror-wheelhouse-file-recurse

# A wheelhouse rebuilt with the same version (a fix before a release) is installed too.
ccmirror-package-refresh-cmd-run:
  cmd.run:
    - name: {{ pip_install }} --force-reinstall --no-deps '{{ requirement }}'
    - onchanges:
      - file: ccmirror-wheelhouse-file-recurse
    - require:
      - cmd: ccmirror-package-cmd-run
