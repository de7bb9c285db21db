# ssl_nav: `make demo` runs the main job, `make test` the test suite. Both set up .venv first (idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
# Real-DDS tests and processes stay on loopback (Fast DDS would otherwise multicast on every interface).
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
DEMO_OUT ?= out/demo

.PHONY: setup test test-fast demo demo-quick bench clean

setup:
	@bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q test

# the edit-test loop: everything but the slow tier (pytest marker `slow`, setup.cfg)
test-fast: setup
	$(PY) -m pytest -q -m "not slow" test

demo: setup
	$(VENV)/bin/ssl-nav demo --out $(DEMO_OUT)

demo-quick: setup
	$(VENV)/bin/ssl-nav demo --quick --out $(DEMO_OUT)-quick

bench: setup
	$(PY) -m pip install -q -r requirements-bench.txt
	$(PY) benchmarks/run.py --out BENCHMARKS.md

clean:
	rm -rf out build install log .pytest_cache
