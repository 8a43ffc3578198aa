# Fresh machine: `make quick` (install + main job) and `make test` (install + tests).
# The venv is created with the CPU build of torch; GPU users install their own torch first.
PY_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install quick test lint bench results clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PY_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

quick: $(STAMP)
	$(VENV)/bin/mgrpo ablate quick --workers 2 --out runs/quick

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest -n 2

# the runs behind RESULTS.md (about an hour on 2 cores): see experiments/results.sh
results: $(STAMP)
	bash experiments/results.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) benchmarks/bench_math.py
	$(PY) benchmarks/bench_envs.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_generator.py
	$(PY) benchmarks/bench_store.py
	$(PY) benchmarks/bench_split.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
