{#- The rsync target (site:storage_backend rsync): the storage sshd's host key, its
    authorized downloader keys and its config. #}
{%- from "storage/map.jinja" import storage with context %}

storage-sshd-dir-file-directory:
  file.directory:
    - name: {{ storage.sshd_dir }}
    - user: root
    - group: root
    - mode: "0755"
    - makedirs: True

storage-host-key-file-managed:
  file.managed:
    - name: {{ storage.sshd_dir }}/ssh_host_ed25519_key
    - contents: {{ (storage.host_key.private.strip() ~ "\n") | json }}
    - user: root
    - group: root
    - mode: "0600"
    - show_changes: False
    - require:
      - file: storage-sshd-dir-file-directory

storage-host-key-pub-file-managed:
  file.managed:
    - name: {{ storage.sshd_dir }}/ssh_host_ed25519_key.pub
    - contents: {{ (storage.host_key.public.strip() ~ "\n") | json }}
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - file: storage-sshd-dir-file-directory

# Root's file, outside the storage user's home: the user cannot add a key of its own.
storage-authorized-keys-file-managed:
  file.managed:
    - name: {{ storage.sshd_dir }}/authorized_keys
    - source: salt://storage/files/authorized_keys.jinja
    - template: jinja
    - context:
        storage: {{ storage | json }}
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - file: storage-sshd-dir-file-directory

storage-sshd-config-file-managed:
  file.managed:
    - name: {{ storage.sshd_dir }}/sshd_config
    - source: salt://storage/files/sshd_config.jinja
    - template: jinja
    - context:
        storage: {{ storage | json }}
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - file: storage-sshd-dir-file-directory
