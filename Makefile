# Two commands do all the set-up on a fresh machine:
#   make bench   run the quick benchmark suite (creates .venv if missing)
#   make test    run the test suite under the TensorFlow, JAX and PyTorch backends
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
	$(VENV)/bin/fastconv demo

# Everything under TensorFlow (the default backend, real-data tests included),
# then the layer tests again under JAX and PyTorch.
test: $(STAMP)
	KERAS_BACKEND=tensorflow $(PYTEST) tests
	KERAS_BACKEND=jax $(PYTEST) -m layers tests/layers
	KERAS_BACKEND=torch $(PYTEST) -m layers tests/layers

lint: $(STAMP)
	$(VENV)/bin/ruff check fastconv tests benchmarks examples
	$(VENV)/bin/ruff format --check fastconv tests benchmarks examples

clean:
	rm -rf $(VENV) build *.egg-info
