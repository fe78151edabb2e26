{#- Admin users from pillar: a key to log in with, never a password. #}
{%- from "common/map.jinja" import common with context %}
{%- for name, user in common.users | dictsort %}

common-user-{{ name }}-user-present:
  user.present:
    - name: {{ name }}
    - fullname: {{ user.get("fullname", name) | json }}
    - shell: {{ user.get("shell", "/bin/bash") }}
    - groups: {{ user.get("groups", []) | json }}
    - createhome: True

{%-   for key in user.get("ssh_keys", []) %}

common-user-{{ name }}-key-{{ loop.index }}-ssh-auth-present:
  ssh_auth.present:
    - name: {{ key | json }}
    - user: {{ name }}
    - require:
      - user: common-user-{{ name }}-user-present
{%-   endfor %}
{%- endfor %}
