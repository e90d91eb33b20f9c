# The two commands the README opens with. Each creates .venv when missing and
# installs into it; torch is pinned to the CPU wheel so no CUDA build is pulled.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test deps bench results clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,train,dashboard,plots]'
	touch $(STAMP)

# KEEP=1 leaves the testnet (and the dashboard) running and prints how to reach and stop them.
demo: $(STAMP)
	$(VENV)/bin/fbci demo $(if $(KEEP),--keep)

# Chromium and Prometheus for the dashboard's browser and Prometheus tests (apt-get when root).
deps:
	sh scripts/system-deps.sh

# Two workers, one test file each at a time (most integration tests wait on real validators' blocks).
test: $(STAMP) deps
	$(PY) -m pytest -q -n 2 --dist loadfile

# Flower pins packaging<26, which would downgrade the runtime venv, so it lives in its own venv.
BENCH_VENV := .venv-bench
# bench.run_all runs every bench (aggregation under the bench venv when flwr imports there), writes
# bench/results/summary.json and says what it skipped and why; a failed Flower install only empties
# the Flower columns. BENCH_ARGS=--quick for small sizes.
bench: $(STAMP)
	-test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	-$(BENCH_VENV)/bin/pip install -q numpy pydantic msgpack cryptography threadpoolctl 'flwr==1.42.0'
	-$(BENCH_VENV)/bin/pip install -q --no-deps -e .
	$(PY) -m bench.run_all $(BENCH_ARGS)

# The README's results table (between its bench-results markers) from bench/results/*.json.
results: $(STAMP)
	$(PY) -m bench.report --write-readme

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
