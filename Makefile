# crmflow developer tasks. `make run` and `make test` are all a new machine needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench schemas docs layout clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	# An editable install leaves our modules uncompiled (and PYTHONDONTWRITEBYTECODE may
	# keep Python from caching them): compile once, as a wheel install would.
	$(BIN)/python -m compileall -q crmflow
	touch $(STAMP)

# The demo: a CRM in demo/ (created once), the daemon running on it with the example
# workflows. Change rows with sqlite3 demo/crm.db and watch it act; Ctrl-C stops it.
DEMO ?= demo

run: install
	test -f $(DEMO)/crm.db || $(BIN)/crmflow init $(DEMO)
	cd $(DEMO) && $(abspath $(BIN))/crmflow run

test: install
	$(BIN)/ruff check crmflow tests bench
	$(BIN)/lint-imports
	$(BIN)/crmflow lint --strict rules
	$(BIN)/crmflow test rules
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check crmflow tests bench
	$(BIN)/ruff format --check crmflow tests bench

bench: install
	$(BIN)/python -m pip install --quiet -e '.[test,bench]' --config-settings editable_mode=compat
	$(BIN)/python -m bench

# Regenerate the committed JSON Schemas from the registry.
schemas: install
	$(BIN)/python -m crmflow.rules.schema_files

# Regenerate docs/reference.md from the registry and the entity model (a test fails until you do).
docs: install
	$(BIN)/python -m crmflow.rules.reference

# Regenerate the README's Layout section from the package tree (a test fails until you do).
layout: install
	$(BIN)/python -m tests.layout

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info
