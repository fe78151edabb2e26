{%- from "downloader/map.jinja" import downloader with context %}

downloader-tools-pkg-installed:
  pkg.installed:
    - pkgs: {{ downloader.packages | json }}
