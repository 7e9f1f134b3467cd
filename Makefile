# gatekeeper: `make run` shows a change gated end to end; `make test` runs the suite.
VENV    ?= .venv
PYTHON  ?= python3
STAMP   := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: run serve test lint bench clean sysdeps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

sysdeps:
	@bash scripts/system-deps.sh

run: sysdeps $(STAMP)
	$(VENV)/bin/gatekeeper sandbox

serve: sysdeps $(STAMP)
	$(VENV)/bin/gatekeeper sandbox --serve

test: $(STAMP)
	@bash scripts/system-deps.sh --all || echo "some test servers are missing: their tests will skip"
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check gatekeeper listeners tests bench stubs
	$(VENV)/bin/ruff format --check gatekeeper listeners tests bench stubs
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: sysdeps $(STAMP)
	$(VENV)/bin/python bench/e2e_latency.py
	$(VENV)/bin/python bench/gearman_tls.py
	$(VENV)/bin/python bench/gear_nodelay.py
	$(VENV)/bin/python bench/layout_load.py
	$(VENV)/bin/python bench/route.py
	$(VENV)/bin/python bench/gate_queue.py
	$(VENV)/bin/python bench/pool_converge.py
	$(VENV)/bin/python bench/devstack_kit.py
	$(VENV)/bin/python bench/failure_scan.py
	$(VENV)/bin/python bench/flaky_query.py
	@bash scripts/system-deps.sh --bench
	$(VENV)/bin/python bench/web_logs.py

clean:
	rm -rf state .pytest_cache .mypy_cache .ruff_cache .import_linter_cache build *.egg-info
