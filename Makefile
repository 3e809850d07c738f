# SSL Workbench. `make lab` = set up + open the quickstart notebook; `make test` = set up + all checks.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MPLBACKEND ?= Agg

.PHONY: setup lab demo test test-slow test-notebooks test-browser browser-deps lint bench bench-setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,app]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

lab: setup  ## JupyterLab on the quickstart notebook (after a headless demo run)
	$(VENV)/bin/workbench demo
	$(VENV)/bin/jupyter lab notebooks/01_quickstart.ipynb

demo: setup  ## headless main job: short training on built-in data, plots into the run folder
	$(VENV)/bin/workbench demo

lint: setup
	$(VENV)/bin/ruff check workbench tests benchmarks notebooks
	$(VENV)/bin/ruff format --check workbench tests benchmarks
	$(VENV)/bin/mypy

test: lint  ## the whole default suite (what CI runs)
	$(PY) -m pytest -q -m "not slow and not browser"

test-slow: bench-setup  ## long checks: quality, 2-process DDP, notebooks in quick mode, benchmark smoke tests
	$(PY) -m pytest -q -m slow

test-notebooks: setup  ## notebooks 02-06 executed in quick mode (WORKBENCH_QUICK=1)
	$(PY) -m pytest -q -m slow tests/test_notebooks.py::test_runs_in_quick_mode  # the quickstart runs in `make test`

browser-deps:  ## Debian's Chromium for the Playwright test (Playwright's own download fails offline)
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "Install Debian's chromium (sudo apt-get install chromium) for the browser test"; exit 1; fi; }

test-browser: setup browser-deps  ## JupyterLab + headless Chromium: runs the quickstart, Start/Stop
	$(PY) -m pytest -q -m browser

bench-setup: $(VENV)/.bench-installed  ## the `bench` extra (Lightly SSL, the reference library)

$(VENV)/.bench-installed: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[bench]'
	touch $@

bench: bench-setup
	$(PY) benchmarks/train_throughput.py --steps 10 --warmup 3 --repeats 5
	$(PY) benchmarks/quality.py
	$(PY) benchmarks/interactive.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
