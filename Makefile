# Two commands do all the set-up on a fresh machine:
#   make bench   run the quick benchmark suite on MNIST (creates .venv if missing)
#   make test    run the test suite under the TensorFlow, JAX and PyTorch backends
# and `make lint` runs ruff check and ruff format --check (CI runs it before make test).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fastconv-installed
PYTEST := $(PY) -m pytest -p no:cacheprovider -q

.PHONY: bench test lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,jax,torch]"
	touch $(STAMP)

bench: $(STAMP)
	$(VENV)/bin/fastconv bench

# Everything under TensorFlow (the default backend, real-data tests and the
# docstring examples included), then the layer, implementation, profiler and
# timing tests again under JAX and PyTorch.
test: $(STAMP)
	KERAS_BACKEND=tensorflow $(PYTEST) tests
	KERAS_BACKEND=tensorflow $(PYTEST) --doctest-modules fastconv
	KERAS_BACKEND=jax $(PYTEST) tests/layers tests/kernels tests/profile tests/test_timing.py
	KERAS_BACKEND=torch $(PYTEST) tests/layers tests/kernels tests/profile tests/test_timing.py

lint: $(STAMP)
	$(VENV)/bin/ruff check fastconv fastconv_launch tests benchmarks examples
	$(VENV)/bin/ruff format --check fastconv fastconv_launch tests benchmarks examples

clean:
	rm -rf $(VENV) build *.egg-info
