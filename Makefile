# Two entry points: `make simulate` (the main job, offline) and `make test`.
# Each creates the virtual environment when it is missing, from requirements.lock (the exact tested versions).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
LOCK := requirements.lock
SCENARIO ?= scenarios/hospitals.yaml

.PHONY: simulate test test-fast lint bench lock check-lock clean docs browser

# The venv gets exactly the lock (pip and setuptools included), then fedleak itself, built by the locked setuptools
# without fetching anything else; check-lock then proves that nothing else slipped in.
$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -r $(LOCK)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(MAKE) --no-print-directory check-lock
	touch $@

# Fails when the venv differs from the lock in any package or version.
check-lock:
	@$(PIP) freeze --all --exclude-editable > $(VENV)/freeze.txt
	@grep -v -e '^#' -e '^$$' $(LOCK) | diff -u - $(VENV)/freeze.txt \
		|| (echo "$(VENV) differs from $(LOCK) (lines above: - lock, + venv); run 'make clean' and retry" && exit 1)

simulate: $(VENV)/.installed
	$(VENV)/bin/fedleak simulate $(SCENARIO)

test: $(VENV)/.installed browser
	$(VENV)/bin/ruff check .
	$(MAKE) --no-print-directory docs
	$(PY) -m pytest -q

# The documentation site, built offline into build/site (ignored by git); strict: a broken link or a missing
# snippet fails the build.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -q -d build/site

# Debian's chromium and chromium-driver for the report's browser test (tests/test_report_browser.py), installed
# when missing and when running as root; otherwise that test skips and says why.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null \
		|| echo "chromium could not be installed: the browser test will skip"; \
	else echo "no /usr/bin/chromium or chromedriver and not root: the browser test will skip"; fi

# Everything not marked slow: the edit-test loop.
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"

# Regenerate the lock: a fresh venv takes the newest versions pyproject.toml's ranges allow, and its `pip freeze`
# becomes the lock. Then check it: `make clean test`, and the benchmarks whose figures the docs quote (`make bench`).
lock:
	rm -rf .lock-venv
	python3 -m venv .lock-venv
	.lock-venv/bin/pip install -q --upgrade pip setuptools
	.lock-venv/bin/pip install -q -e ".[dev]"
	{ echo "# Exact versions fedleak is tested with (CPython 3.11, Linux x86-64): regenerate with 'make lock'."; \
	  echo "# Written by pip freeze --all --exclude-editable of a fresh venv holding fedleak[dev]."; \
	  .lock-venv/bin/pip freeze --all --exclude-editable; } > $(LOCK)
	rm -rf .lock-venv

bench: $(VENV)/.installed
	$(PY) bench/attack_speed.py
	$(PY) bench/quality_gm.py all
	$(PY) bench/analytic.py all
	$(PY) bench/sim_overhead.py
	$(PY) bench/defense_cost.py

clean:
	rm -rf $(VENV) runs .pytest_cache

# The hospitals federation in Docker containers, end to end (docker/compose-test.sh): installs and starts what is
# missing (Debian's docker.io, Compose v2, debootstrap; root), builds the images, runs, checks, tears down.
.PHONY: compose-test
compose-test: $(VENV)/.installed
	docker/compose-test.sh
