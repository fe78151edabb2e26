{#- The account the downloaders push as. Its password is '*', not '!': without PAM, sshd
    refuses a locked account even for a key (as lab/processes/storage.py found). #}
{%- from "storage/map.jinja" import storage with context %}

storage-user-user-present:
  user.present:
    - name: {{ storage.user }}
    - home: {{ storage.home }}
    - createhome: True
    - shell: /bin/sh
    - system: True
    - usergroup: True
    - password: "*"

storage-root-file-directory:
  file.directory:
    - name: {{ storage.root }}
    - user: {{ storage.user }}
    - group: {{ storage.user }}
    - mode: "0755"
    - makedirs: True
    - require:
      - user: storage-user-user-present
{%- for subdir in storage.subdirs %}

storage-{{ subdir }}-file-directory:
  file.directory:
    - name: {{ storage.root }}/{{ subdir }}
    - user: {{ storage.user }}
    - group: {{ storage.user }}
    - mode: "0755"
    - require:
      - file: storage-root-file-directory
{%- endfor %}
