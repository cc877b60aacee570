# mailstack — the front door. `make run` and `make test` set up what they need (as root on Debian 12).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      ?= .venv
PYTHON    ?= python3
BIN       := $(VENV)/bin
DATA_DIR  ?= $(CURDIR)/data
DOMAIN    ?= example.com
PYTEST_ARGS ?=
ONLY      ?=
# The lock is made with `uv pip compile pyproject.toml --all-extras -o requirements.lock`.
# Debian packages the tests and benchmarks use: Postfix (and its smtp-sink/smtp-source load tools),
# OpenDKIM as the independent DKIM verifier, Chromium for the dashboard's browser tests.
APT_PACKAGES := postfix opendkim opendkim-tools ssl-cert chromium

.PHONY: help setup system-deps services run test lint typecheck pytest bytecode bench clean compliance ansible-test

help:
	@echo "make run    - set up, initialise $(DATA_DIR) on first use, and serve the API (embedded default)"
	@echo "make test   - set up and run every test (lint, types, pytest)"
	@echo "make bench  - run the benchmarks, write bench/results.json (ONLY=<name> for one)"
	@echo "make ansible-test - apply site.yml to this machine (inventories/local) and prove it (tests/roles)"
	@echo "make compliance - policy pack over every example Pulumi stack (mocked) + mailstack's retention/encryption"

$(BIN)/.installed: pyproject.toml requirements.lock
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $@

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		printf 'postfix postfix/main_mailer_type select Internet Site\npostfix postfix/mailname string mailstack.test\n' | debconf-set-selections; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

setup: system-deps $(BIN)/.installed

# PostgreSQL is a service of the machine; start it if it is installed but stopped.
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || { \
		command -v pg_ctlcluster >/dev/null && pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -1) main start || true; }
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || echo "warning: PostgreSQL is not reachable on 127.0.0.1:5432; its tests will fail"

run: setup
	@if [ ! -f $(DATA_DIR)/mailstack.toml ]; then \
		umask 077; $(BIN)/mailstack init --data-dir $(DATA_DIR) --domain $(DOMAIN) --json > $(DATA_DIR).credentials.json.tmp \
		&& mv $(DATA_DIR).credentials.json.tmp $(DATA_DIR)/credentials.json; fi
	@$(BIN)/python -c 'import json,sys; c=json.load(open(sys.argv[1])); print("API key:    "+c["api_key"]); print("API secret: "+c["api_secret"]); [print("DKIM:       %s TXT \"%s\"" % (d["dns_name"], d["txt"])) for d in c["dkim"]]' $(DATA_DIR)/credentials.json
	@echo "API:        http://$$(sed -n 's/^http *= *"\(.*\)".*/\1/p' $(DATA_DIR)/mailstack.toml | head -1)  (OpenAPI at /docs)"
	exec $(BIN)/mailstack serve --data-dir $(DATA_DIR)

lint: $(BIN)/.installed
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

pytest: setup services bytecode
	$(BIN)/pytest $(PYTEST_ARGS)

# Every `mailstack` the tests start imports ~900 modules: compiled once here, not at each start (3 s of a
# 6 s start on this kind of machine, whose PYTHONDONTWRITEBYTECODE keeps Python from caching them).
bytecode: $(BIN)/.installed
	@$(BIN)/python -m compileall -q -j 0 mailstack >/dev/null

# The Ansible roles' proof on this machine, as root (part of `make test` too): site.yml applied with
# inventories/local twice (changed=0) and in check mode, then testinfra, relay, firewall, end-to-end, lint.
ansible-test: setup services bytecode
	$(BIN)/pytest tests/roles $(PYTEST_ARGS)

test: setup services lint typecheck pytest compliance

# The CrossGuard rules over the Pulumi program run under mocks (no cloud account), and mailstack's own
# retention and encryption settings; exits non-zero on a mandatory violation.
compliance: setup
	$(BIN)/python -m policies.compliance

bench: setup services bytecode
	$(BIN)/python bench/run.py $(if $(ONLY),--only $(ONLY))

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
