{#- New uploads every day: db-1's minion schedule runs ccmirror_increment.run once a day
    (_modules/ccmirror_increment.py): `harvester seed increment` with the migrate config
    (db-1's own, root's), a wait while the harvesters (always-on `harvester work --follow`)
    walk the new slices, then `harvester reconcile`.

    The minion's schedule on db-1, not the master's schedule nor a systemd timer: it runs
    where the database and its credentials are, with the master down too (a master schedule
    would stop with the master and reach db-1 through it); the lab's init
    (docker-systemctl-replacement) runs no timers, so a timer would never fire there; each
    run's return (what was seeded, or the error) is a job on the master; and the outcome that
    matters is seen whoever runs it: `salt-run batch.status` and `harvester status` print how
    far behind now the harvested catalog is. `db:increment:enabled: False` removes it. #}
{%- from "db/map.jinja" import db with context %}
{%- set increment = db.increment %}

include:
  - ccmirror
  - .migrate

{%- if increment.enabled %}

db-increment-schedule-present:
  schedule.present:
    - name: ccmirror-increment
    - function: ccmirror_increment.run
    - job_kwargs:
        lag_hours: {{ increment.lag_hours | float }}
        stride: {{ increment.stride | int }}
        start: {{ increment.start | int }}
        wait_hours: {{ increment.wait_hours | float }}
    - hours: {{ increment.every_hours | int }}
    - splay: {{ increment.splay | int }}
    - maxrunning: 1
    - run_on_start: False
    - require:
      - cmd: db-migrate-cmd-run
{%- else %}

db-increment-schedule-absent:
  schedule.absent:
    - name: ccmirror-increment
{%- endif %}
