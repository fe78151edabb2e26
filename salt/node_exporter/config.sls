{%- from "node_exporter/map.jinja" import node_exporter with context %}
{%- set args = ["--web.listen-address=" ~ node_exporter.listen_address ~ ":" ~ node_exporter.port,
                "--collector.textfile.directory=" ~ node_exporter.textfile_dir]
               + node_exporter.args %}

include:
  - .package

# Batch jobs (root, from db-1's minion schedule) write ccmirror_<job>.prom here atomically;
# the exporter (user prometheus) reads it.
node_exporter-textfile-file-directory:
  file.directory:
    - name: {{ node_exporter.textfile_dir }}
    - user: root
    - group: root
    - mode: "0755"
    - makedirs: True

node_exporter-defaults-file-managed:
  file.managed:
    - name: {{ node_exporter.defaults_file }}
    - contents: |
        # Managed by Salt (node_exporter): on the private address only.
        ARGS={{ args | join(" ") | json }}
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - pkg: node_exporter-package-pkg-installed
