# SSL Workbench. `make lab` = set up + open the quickstart notebook; `make test` = set up + all checks.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MPLBACKEND ?= Agg

.PHONY: setup lab demo test test-slow test-browser lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,app]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

lab: setup  ## JupyterLab on the quickstart notebook (after a headless demo run)
	$(VENV)/bin/workbench demo --out runs/demo --overwrite
	$(VENV)/bin/jupyter lab notebooks/01_quickstart.ipynb

demo: setup  ## headless main job: short training on built-in data, plots into the run folder
	$(VENV)/bin/workbench demo --out runs/demo --overwrite

lint: setup
	$(VENV)/bin/ruff check workbench tests benchmarks notebooks
	$(VENV)/bin/ruff format --check workbench tests benchmarks
	$(VENV)/bin/mypy

test: lint  ## the whole default suite (what CI runs)
	$(PY) -m pytest -q -m "not slow and not browser"

test-slow: setup
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
