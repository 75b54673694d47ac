"""One clock for the benchmark, the profiler and the autotuner.

Everything that fastconv reports as a time is measured here: warm-up runs kept
apart from measured runs, ``time.perf_counter_ns`` around each call, a real
synchronisation with the device (``block_until_ready`` on JAX, fetching one
element of each result on TensorFlow, ``torch.cuda.synchronize`` on a CUDA
device), every raw sample kept, and medians with their spread. Variants are
compared *interleaved*, in one process, so that machine drift hits them all
alike.

Example:
    >>> from fastconv.timing import measure
    >>> t = measure(lambda: sum(range(1000)), warmup=1, repeats=5)
    >>> len(t.samples_ns)
    5
"""

from __future__ import annotations

import datetime as _dt
import functools
import inspect
import os
import platform
import random
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from fastconv._validation import is_int_at_least

__all__ = [
    "Timing",
    "measure",
    "interleaved",
    "block",
    "default_jit",
    "make_forward",
    "make_grad_step",
    "environment",
    "device_description",
    "timing_from_dict",
]


@dataclass(frozen=True)
class Timing:
    """Raw samples of one measured function, in nanoseconds, with summaries."""

    samples_ns: tuple[int, ...]
    warmup: int = 0
    extra: dict = field(default_factory=dict)

    def _seconds(self) -> np.ndarray:
        return np.asarray(self.samples_ns, dtype="float64") / 1e9

    @property
    def median(self) -> float:
        """Median in seconds."""
        return float(statistics.median(self._seconds()))

    @property
    def p10(self) -> float:
        return float(np.percentile(self._seconds(), 10))

    @property
    def p90(self) -> float:
        return float(np.percentile(self._seconds(), 90))

    @property
    def min(self) -> float:
        return float(self._seconds().min())

    @property
    def max(self) -> float:
        return float(self._seconds().max())

    def summary(self) -> dict:
        """Median, p10, p90, min and max in seconds, and the sample count."""
        return {
            "median_s": self.median,
            "p10_s": self.p10,
            "p90_s": self.p90,
            "min_s": self.min,
            "max_s": self.max,
            "n": len(self.samples_ns),
        }

    def as_dict(self) -> dict:
        """Everything, raw samples included, ready for JSON."""
        return {
            **self.summary(),
            "warmup": self.warmup,
            "samples_ns": list(self.samples_ns),
        }


def block(value):
    """Wait until ``value`` (a tensor or a nested structure of them) is computed.

    Returns ``value`` so it can wrap a call: ``block(fn())``.
    """
    import keras

    backend = keras.backend.backend()
    leaves = _leaves(value)
    if backend == "jax":
        import jax

        jax.block_until_ready(leaves)
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
    else:
        import tensorflow as tf

        # One element of each result is enough to wait for it (on a GPU the
        # slice is queued after the computation); copying the whole tensor to
        # the host, as ``.numpy()`` does, would add a memory copy the size of
        # the output to every sample.
        for leaf in leaves:
            if isinstance(leaf, tf.Tensor | tf.Variable):
                flat = tf.reshape(leaf, [-1])
                if flat.shape[0] != 0:
                    flat[:1].numpy()
    return value


def _leaves(value) -> list:
    if isinstance(value, Mapping):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list | tuple):
        return [x for v in value for x in _leaves(v)]
    return [value] if value is not None else []


def _check_counts(warmup: int, repeats: int) -> None:
    if not is_int_at_least(warmup, 0):
        raise ValueError(f"warmup must be an int >= 0, received warmup={warmup!r}")
    if not is_int_at_least(repeats, 1):
        raise ValueError(f"repeats must be an int >= 1, received repeats={repeats!r}")


def measure(
    fn: Callable[[], object], *, warmup: int = 3, repeats: int = 20, sync: bool = True
) -> Timing:
    """Time ``fn()``: ``warmup`` unmeasured calls, then ``repeats`` measured ones.

    Args:
        fn: a function of no arguments.
        warmup: calls before measuring (compilation, caches).
        repeats: measured calls; every sample is kept.
        sync: wait for the device after each call (``block``).
    """
    return interleaved({"fn": fn}, warmup=warmup, repeats=repeats, sync=sync)["fn"]


def interleaved(
    fns: Mapping[str, Callable[[], object]],
    *,
    warmup: int = 3,
    repeats: int = 20,
    sync: bool = True,
    seed: int = 0,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> dict[str, Timing]:
    """Time several functions round-robin, so drift affects them all alike.

    Each round calls every function once, in a fresh random order (seeded by
    ``seed``, so a run is repeatable). A fixed or merely rotated order gives
    each function the same predecessor in nearly every round, and the
    predecessor matters: a function that runs right after a large one finds
    the caches full of that one's data. On this project's CPU, in one run,
    three identical layers timed after a ``Conv2D`` in rotated order came out
    1.30, 1.18 and 1.12 ms; shuffled, 1.10, 1.09 and 1.07 ms. Warm-up rounds
    come first.

    ``clock`` reads the time in nanoseconds around each call (tests pass a
    fake one, so that what they check does not depend on the machine's speed).

    Returns:
        name -> ``Timing``, in the order of ``fns``.
    """
    _check_counts(warmup, repeats)
    if not fns:
        raise ValueError("fns must name at least one function, received fns={}")
    names = list(fns)
    wait = block if sync else (lambda v: v)
    for _ in range(warmup):
        for name in names:
            wait(fns[name]())
    samples: dict[str, list[int]] = {name: [] for name in names}
    order = list(names)
    rng = random.Random(seed)
    for _ in range(repeats):
        rng.shuffle(order)
        for name in order:
            fn = fns[name]
            start = clock()
            wait(fn())
            samples[name].append(clock() - start)
    return {name: Timing(tuple(samples[name]), warmup) for name in names}


def _training(layer, value: bool) -> dict:
    """``{"training": value}`` if ``layer.call`` takes it (stateless_call passes
    keyword arguments through unfiltered), else ``{}``."""
    params = inspect.signature(layer.call).parameters
    return {"training": value} if "training" in params else {}


def default_jit() -> bool:
    """Whether Keras compiles with XLA here by default, as this project times
    a whole model: always on JAX, on TensorFlow only with a GPU (on a CPU its
    graph mode is the faster and the usual one), never on PyTorch."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return backend == "jax"


def make_forward(layer, x, *, jit: bool = True) -> Callable[[], object]:
    """A function of no arguments that runs ``layer`` (or a model) on ``x``.

    Inference mode, compiled the way each backend compiles Keras code:
    ``jax.jit`` of ``stateless_call`` on JAX, ``tf.function`` (XLA when
    ``jit``) on TensorFlow, eager ``torch.no_grad`` on PyTorch.
    """
    import keras

    backend = keras.backend.backend()
    # A model of several inputs takes a list or dict of arrays.
    x = keras.tree.map_structure(keras.ops.convert_to_tensor, x)
    if not layer.built:
        layer(x)
    if backend == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        @jax.jit
        def run(tv, ntv, inputs):
            return layer.stateless_call(tv, ntv, inputs, **_training(layer, False))[0]

        return functools.partial(run, trainable, non_trainable, x)
    if backend == "tensorflow":
        import tensorflow as tf

        run = tf.function(lambda inputs: layer(inputs, training=False), jit_compile=jit)
        return functools.partial(run, x)
    if backend == "torch":
        import torch

        def run_torch():
            with torch.no_grad():
                return layer(x, training=False)

        return run_torch
    raise ValueError(f"unsupported Keras backend {backend!r}")


def make_grad_step(layer, x, *, jit: bool = True) -> Callable[[], object]:
    """A function of no arguments: forward and backward pass of ``layer`` on ``x``.

    The backward pass is a vector-Jacobian product with a fixed random output
    gradient (drawn once, seeded): it returns the gradients with respect to
    the input and every trainable weight, as inside a network. No loss is
    computed, so the time is the layer's own: in a network the loss sits at
    the end, and a per-layer loss (a square and a mean over the output, and
    their gradients) would add several passes over the output to every
    variant alike. The optimizer update is not included either (it is the same
    for every variant).

    The pass runs in training mode but leaves ``layer`` as it was: the
    updates a training-mode call makes to its non-trainable state (a
    BatchNormalization's moving statistics) are computed and dropped, so
    timing a model never changes what it predicts.
    """
    import keras

    backend = keras.backend.backend()
    x = keras.ops.convert_to_tensor(x)
    if not layer.built:
        layer(x)
    rng = np.random.default_rng(0)
    cotangent = keras.tree.map_structure(
        lambda spec: keras.ops.convert_to_tensor(
            rng.standard_normal(tuple(spec.shape)).astype(spec.dtype)
        ),
        layer.compute_output_spec(
            keras.KerasTensor(tuple(x.shape), keras.backend.standardize_dtype(x.dtype))
        ),
    )
    if backend == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]
        kwargs = _training(layer, True)

        def forward(inputs, tv):
            return layer.stateless_call(tv, non_trainable, inputs, **kwargs)[0]

        # The cotangent takes the dtypes the traced call really returns: under
        # a mixed policy they can differ from compute_output_spec's.
        cotangent = keras.tree.map_structure(
            lambda grad, out: grad.astype(out.dtype),
            cotangent,
            jax.eval_shape(forward, x, trainable),
        )

        @jax.jit
        def step(inputs, tv, grad_out):
            return jax.vjp(forward, inputs, tv)[1](grad_out)

        return functools.partial(step, x, trainable, cotangent)
    if backend == "tensorflow":
        import tensorflow as tf

        def step(inputs, grad_out):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                with keras.StatelessScope():
                    out = layer(inputs, training=True)
            return tape.gradient(
                out, [inputs, *layer.trainable_variables], output_gradients=grad_out
            )

        run = tf.function(step, jit_compile=jit)
        return functools.partial(run, x, cotangent)
    if backend == "torch":
        import torch

        x_req = x.detach().clone().requires_grad_(True)
        weights = [v.value for v in layer.trainable_variables]
        grad_out = keras.tree.flatten(cotangent)

        def run_torch():
            with keras.StatelessScope():
                out = keras.tree.flatten(layer(x_req, training=True))
            return torch.autograd.grad(out, [x_req, *weights], grad_outputs=grad_out)

        return run_torch
    raise ValueError(f"unsupported Keras backend {backend!r}")


@functools.cache
def _git_commit() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=here,
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def _version(module: str) -> str | None:
    from importlib import metadata

    for dist in (module, f"{module}-cpu"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def device_description() -> str:
    """What the Keras backend computes on: a GPU's name, or the CPU."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            dev = jax.devices()[0]
            return f"{dev.platform}:{getattr(dev, 'device_kind', dev)}"
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return f"gpu:{torch.cuda.get_device_name(0)}"
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return f"gpu:{details.get('device_name', gpus[0].name)}"
    except Exception as exc:  # a description must never break a benchmark
        return f"unknown ({type(exc).__name__}: {exc})"
    return f"cpu:{platform.processor() or platform.machine()} x{os.cpu_count()}"


#: The vector extensions a result records (``cpu_info``): the same layer's
#: speedup over ``Conv2D`` can differ twofold between AVX2 and AVX-512 CPUs.
VECTOR_EXTENSIONS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
)


def cpu_info() -> dict:
    """The CPU's model name, which of `VECTOR_EXTENSIONS` it has, and its cores
    (from ``/proc/cpuinfo`` where there is one)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return {
        "model": name,
        "vector_extensions": [flag for flag in VECTOR_EXTENSIONS if flag in flags],
        "cores": os.cpu_count(),
    }


def environment() -> dict:
    """Device, CPU, backend, precision, versions, git commit and date, for
    result files."""
    import keras

    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "backend": keras.backend.backend(),
        "device": device_description(),
        "cpu": cpu_info(),
        "precision": keras.config.dtype_policy().name,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "git_commit": _git_commit(),
        "versions": {
            name: _version(name)
            for name in (
                "fastconv",
                "keras",
                "tensorflow",
                "jax",
                "torch",
                "numpy",
                "tensorly",
            )
        },
    }


def timing_from_dict(data: Mapping) -> Timing:
    """Rebuild a ``Timing`` from ``Timing.as_dict()`` output."""
    return Timing(tuple(int(v) for v in data["samples_ns"]), int(data.get("warmup", 0)))
