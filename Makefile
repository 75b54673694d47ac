# Two commands do all the set-up on a fresh machine:
#   make bench   run the quick benchmark suite on MNIST (creates .venv if missing)
#   make test    run the test suite under the TensorFlow, JAX and PyTorch backends
# and `make lint` runs ruff check and ruff format --check (CI runs it before make test).
# For a GPU machine without network (docs/benchmarks.md, "On a GPU"):
#   make gpu-carry  wheels, data and the commit into .gpu-carry/ (needs network)
#   make bench-gpu  benchmarks/gpu/run.sh into $(GPU_OUT) (on the GPU machine)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fastconv-installed
PYTEST := $(PY) -m pytest -p no:cacheprovider -q

GPU_OUT ?= bench-out/gpu
GPU_WHEELS := .gpu-carry/wheels
# What the GPU machine (Python 3.12, PyTorch and JAX, no TensorFlow) lacks of
# Keras's and fastconv's dependencies, pinned to this checkout's versions.
GPU_PACKAGES = $(shell $(PY) -c "from importlib.metadata import version as v; \
	print(*(f'{n}=={v(n)}' for n in ('keras', 'tensorly', 'namex', 'optree')))")
GPU_PLATFORMS := $(foreach p,manylinux_2_28_x86_64 manylinux_2_27_x86_64 \
	manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64,--platform $(p))

.PHONY: bench test lint clean gpu-wheels gpu-carry bench-gpu

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,jax,torch,export]"
	touch $(STAMP)

bench: $(STAMP)
	$(VENV)/bin/fastconv bench --force

# Everything under TensorFlow (the default backend, real-data tests and the
# docstring examples included), then the layer, implementation, profiler and
# timing tests again under JAX and PyTorch.
test: $(STAMP)
	KERAS_BACKEND=tensorflow $(PYTEST) tests
	KERAS_BACKEND=tensorflow $(PYTEST) --doctest-modules fastconv
	KERAS_BACKEND=jax $(PYTEST) tests/layers tests/kernels tests/profile tests/export tests/test_timing.py
	KERAS_BACKEND=torch $(PYTEST) tests/layers tests/kernels tests/profile tests/export tests/test_timing.py

lint: $(STAMP)
	$(VENV)/bin/ruff check fastconv fastconv_launch tests benchmarks examples
	$(VENV)/bin/ruff format --check fastconv fastconv_launch tests benchmarks examples

gpu-wheels: $(STAMP)
	rm -rf $(GPU_WHEELS)
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp $(GPU_PLATFORMS) -d $(GPU_WHEELS) $(GPU_PACKAGES)

gpu-carry: gpu-wheels
	$(PY) -m benchmarks.gpu.carry

bench-gpu:
	benchmarks/gpu/run.sh $(GPU_OUT)

# Every committed result under benchmarks/results/ (the files the docs quote),
# regenerated in order from a clean tree: about 10 h on 2 CPU cores, 8 of them
# CIFAR-10. `$(PY) -m benchmarks.results --list` lists the steps and times.
.PHONY: results
results: $(STAMP)
	$(PY) -m benchmarks.results

clean:
	rm -rf $(VENV) build *.egg-info
