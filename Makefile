# Two entry points for a fresh machine with Python 3.11, pip and make:
#   make demo   install everything, generate the company, build every asset, serve the result
#   make test   install everything and run the test suite
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv

.PHONY: install demo test test-fast lint format build clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==0.13.8

# The lock file pins every package; uv installs exactly it (no resolution, no surprises).
$(VENV)/.installed: $(UV) pyproject.toml uv.lock
	UV_PYTHON_DOWNLOADS=never $(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/crm demo

build: install
	$(VENV)/bin/crm build

# Two workers: the expensive shared builds run side by side (tests/conftest.py groups them).
test: install
	$(VENV)/bin/python -m pytest -n 2

# The quick loop: unit tests only (no Dagster builds); `make test` is what CI runs.
test-fast: install
	$(VENV)/bin/python -m pytest -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf data $(VENV) $(TOOLS) dbt_project/target
