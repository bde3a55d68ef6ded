# socd developer commands. `make run` and `make test` do all set-up on a fresh
# Debian/Ubuntu machine (they install what is missing with apt-get and pip).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SERVICES_DIR ?= /tmp/socd-services
export SOCD_SERVICES_DIR := $(SERVICES_DIR)

.PHONY: run test unit integration lint bench eval services services-down venv clean

$(VENV)/.installed: pyproject.toml
	@bash scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	@touch $@

venv: $(VENV)/.installed

## Run socd on its embedded default (sample data -> SQLite store, /metrics on :9797).
run: venv
	$(VENV)/bin/socd run

## Start real Mosquitto, Elasticsearch, Prometheus and Kafka (idempotent).
services:
	@bash scripts/services.sh up

services-down:
	@bash scripts/services.sh down

## Everything: lint, unit, integration and end-to-end tests against real services.
test: venv services
	$(VENV)/bin/ruff check .
	$(PY) -m mypy --strict socd collectors alerting
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pylint --disable=all --enable=duplicate-code --min-similarity-lines=4 \
		--ignore-imports=yes --score=n socd collectors alerting
	$(PY) scripts/eval.py --check-coverage docs/detection.md
	$(PY) -m pytest -p no:cacheprovider tests

unit: venv
	$(PY) -m pytest -p no:cacheprovider tests -m "not integration and not e2e"

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check . || true

## Judge the rule pack on the evaluation corpus (tests/corpus/, docs/detection.md):
## TP/FP/FN per rule and data set; fails on a missed or unlabelled alert.
eval: venv
	$(PY) scripts/eval.py --json $(or $(EVAL_JSON),/tmp/socd-eval.json)

## Benchmarks; prints JSON results.
bench: venv services
	$(PY) scripts/bench.py

.PHONY: golden golden-check
## Golden outputs (tests/golden/, scripts/golden.py): `golden` re-records them after an
## intended change of behaviour (review `git diff tests/golden/`); `golden-check` diffs
## socd's output now against them (make test runs it: tests/integration/test_golden.py).
golden: venv
	$(PY) scripts/golden.py --write

golden-check: venv
	$(PY) scripts/golden.py --check

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

.PHONY: install uninstall deb

## Install socd as a hardened systemd service: venv in /opt/socd, config in /etc/socd
## (never overwritten), unit and user (docs/deployment-systemd.md). Options, e.g.
## INSTALL_ARGS="--prefix /opt/socd --etc /etc/socd" or "--no-systemd".
install:
	@bash scripts/install.sh $(INSTALL_ARGS)

## Remove the venv and the unit; keeps /etc/socd and /var/lib/socd (INSTALL_ARGS=--purge).
uninstall:
	@bash scripts/install.sh --uninstall $(INSTALL_ARGS)

## Debian package dist/socd_<version>_<arch>.deb (dpkg-deb, same layout as install).
deb:
	@bash scripts/build-deb.sh
