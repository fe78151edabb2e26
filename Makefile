# The two commands a user runs: `make lab` and `make test`. Both install what is missing
# (Debian packages when root, the venv in .venv/) and skip what is already there.
VENV := .venv
PY := $(VENV)/bin/python
DEBIAN_PACKAGES := mariadb-server mariadb-client openssh-server rsync python3-venv chromium iproute2 util-linux procps \
	systemd-timesyncd logrotate unattended-upgrades zstd prometheus prometheus-alertmanager prometheus-node-exporter

.PHONY: all lab test lint deps debian-packages clean

all: test

deps: debian-packages $(VENV)/.installed

debian-packages:
	@tools/install-debian-packages $(DEBIAN_PACKAGES)

# The fleet's code with every role's extras, and the lab (a distribution of its own), both
# editable. Reinstalls only when either pyproject.toml changes.
$(VENV)/.installed: pyproject.toml lab/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[harvester,queue,downloader,storage,test]' -e ./lab
	touch $@

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/yamllint --strict salt pillar .yamllint .salt-lint
	find salt pillar -name '*.sls' -print0 | xargs -0 $(VENV)/bin/salt-lint

# Every test file but the e2e on TEST_WORKERS pytest-xdist workers (each file on one of them,
# `--dist loadfile`; each worker its own test MariaDB), then the e2e alone: its lab holds
# work to time bounds that two busy cores would break. Both phases always run; either
# failing fails `make test`. PYTEST_ARGS=...: just those arguments, in one process.
TEST_WORKERS ?= 2
test: lint
ifeq ($(strip $(PYTEST_ARGS)),)
	@rc=0; \
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile --ignore=tests/e2e || rc=1; \
	$(VENV)/bin/pytest -n 0 tests/e2e || rc=1; \
	exit $$rc
else
	$(VENV)/bin/pytest -n 0 $(PYTEST_ARGS)
endif

# The whole mirror through Salt (lab/mission/stages.py); LAB_DOWNLOADERS=, LAB_HARVESTERS=,
# LAB_PHOTOS= size it. Run twice, the second run replaces the first lab.
lab: deps
	$(VENV)/bin/lab mission

clean:
	rm -rf $(VENV) .lab .pytest_cache .ruff_cache
