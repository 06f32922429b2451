# Two entry points: `make simulate` (the main job, offline) and `make test`.
# Each creates the virtual environment when it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
SCENARIO ?= scenarios/hospitals.yaml

.PHONY: simulate test lint bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

simulate: $(VENV)/.installed
	$(VENV)/bin/fedleak simulate $(SCENARIO)

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) bench/attack_speed.py
	$(PY) bench/quality_gm.py all
	$(PY) bench/analytic.py all
	$(PY) bench/sim_overhead.py
	$(PY) bench/defense_cost.py

clean:
	rm -rf $(VENV) runs .pytest_cache
