# Tasks: what CI runs (`make ci`, called by .ci/run) and what a developer runs by hand.
# Every target uses the project's virtual environment; `make venv` (or the README's commands) creates it.

PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: venv lint layers types test ci slow paper bench

$(VENV_STAMP): pyproject.toml
	python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0 -e '.[dev]'
	touch $(VENV_STAMP)

venv: $(VENV_STAMP)  ## create or update .venv (torch pinned to the CPU wheel)

lint: $(VENV_STAMP)  ## ruff: pyflakes, bugbear, isort, pyupgrade, simplify
	.venv/bin/ruff check .

layers: $(VENV_STAMP)  ## import-linter: the pipeline's import layers (DESIGN §8)
	.venv/bin/lint-imports

types: $(VENV_STAMP)  ## mypy on the model, compile and cost layers
	.venv/bin/mypy

test: $(VENV_STAMP)  ## the README's test command
	$(PY) -m pytest -q -n 2

ci: lint layers types test  ## everything CI checks

slow: $(VENV_STAMP)  ## the slow acceptance tests as well (tens of minutes)
	$(PY) -m pytest -q -n 2 --runslow

paper: $(VENV_STAMP)  ## the main job: the paper comparison on the default configuration
	.venv/bin/iopopt -m experiment=paper

bench: $(VENV_STAMP)  ## benchmarks (machine line, command and figures on stdout)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done
