# ha-lab: `make lab-3node` starts a lab, `make test` runs the whole suite (unit + real Docker).
VENV ?= .venv
PY := $(VENV)/bin/python
HALAB := $(VENV)/bin/halab
NAME ?= halab
PYTEST_ARGS ?=
LINT_PATHS := lab tests bench loadtests setup.py

.PHONY: setup venv prereqs images browser lab-1node lab-3node lab-5node down status lint test test-unit test-integration bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test,lint]'
	touch $@

venv: $(VENV)/.installed

# Installs Docker, Compose v2 and debootstrap only when `docker compose` does not work yet.
prereqs:
	@if docker compose version >/dev/null 2>&1 && docker info >/dev/null 2>&1; then :; else \
	  echo "make: Docker or Compose v2 is missing or not running: running scripts/install-prereqs.sh"; \
	  bash scripts/install-prereqs.sh; fi

images: prereqs venv
	$(HALAB) build

setup: images

lab-1node lab-3node lab-5node: lab-%node: setup
	$(HALAB) up --name $(NAME) --nodes $*

down: venv
	$(HALAB) down --name $(NAME)

status: venv
	$(HALAB) status --name $(NAME)

# ruff (rules and format) over the project's Python, mypy --strict over the package (pyproject.toml).
lint: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

# The whole suite in three steps: unit tests; the real-Docker tests two at a time (images built
# first, so two workers never build them at once); then, alone on the machine, the tests marked
# solo, whose measurements have tight bounds (the tuned matrix's 8 s objective).
test: images
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-integration

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# The pages users open are checked in headless Chromium (tests/integration/test_browser.py).
browser:
	@command -v chromium >/dev/null || { echo "make: installing Debian's chromium for the browser tests"; \
	  apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; }

test-integration: images browser
	$(HALAB) build --only galera
	$(PY) -m pytest tests/integration -m "not solo" -n 2 --dist loadfile $(PYTEST_ARGS)
	$(PY) -m pytest tests/integration -m solo $(PYTEST_ARGS)

bench: setup
	@command -v wrk >/dev/null || { echo "make: installing wrk for the benchmarks"; apt-get install -y -qq wrk >/dev/null; }
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
