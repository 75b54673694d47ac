"""Where the time goes: one row per layer, with its cost and its measured time.

``profile(model, inputs)`` runs the model once on a batch to capture every
layer's real input, then times each layer alone on that input, forward and (in
train mode) forward + backward, all interleaved in one process with the whole
model measured the same way. A row holds the layer's parameters, multiply-adds,
activation memory, times, and arithmetic intensity; the result compares the sum
of the rows with the whole model and reports the gap.

How a layer is isolated: ``Sequential`` models are walked layer by layer,
functional models node by node, in the order Keras runs them (replayed by
``fastconv._keras_graph.run_graph``, the wrapper of Keras's private graph API),
and nested models of either kind are expanded (their rows carry the path of names,
``"encoder/conv2d"``). Any other layer, a subclassed model included, is one
row. A layer called on one tensor is timed as it is; a layer called on several
(``Add``, ``Concatenate``, keyword tensors) is wrapped so that its first float
input is the timed input and the others are held as trainable variables, so the
backward pass still computes a gradient for every one of them.

Every time comes from ``fastconv.timing`` (warm-up calls, repeats, medians,
a real device sync); the backward time of a layer is its forward + backward
step minus its (inference) forward, both medians.

Example:
    >>> import keras
    >>> from fastconv.profile import profile
    >>> model = keras.Sequential(
    ...     [keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="conv")])
    >>> result = profile(model, batch_size=2, warmup=1, repeats=2, jit=False)
    >>> [row.path for row in result.layers]
    ['conv']
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

from fastconv import _keras_graph, timing
from fastconv._validation import is_int_at_least
from fastconv.cost import layer_cost
from fastconv.profile import report

__all__ = ["MODES", "LayerProfile", "ProfileResult", "profile"]

MODES = ("train", "inference")
DEFAULT_BATCH_SIZE = 32

# Layers with weights whose multiply-adds are zero by convention (element-wise
# scaling, table look-ups); other weighted layers unknown to ``layer_cost`` are
# flagged as not modelled instead of silently counted as free.
_ZERO_MAC_LAYERS = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
    keras.layers.Embedding,
)
_COSTED_LAYERS = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.Dense,
)


@dataclass(frozen=True)
class LayerProfile:
    """One call of one layer: its cost and its measured times.

    Attributes:
        path: the layer's name, prefixed by the names of the nested models it
            sits in (``"encoder/conv2d"``); a layer called several times gets
            ``"name[1]"``, ``"name[2]"`` for the later calls.
        class_name: the layer's class.
        input_shape: shape of its first input, batch axis included.
        output_shape: shape of its (first) output, batch axis included.
        params: parameters (trainable scalars); a shared layer counts them at
            its first call only.
        macs_per_example: multiply-adds for one example (``fastconv.cost``).
        macs_modelled: False when the layer has weights that ``layer_cost``
            does not model (its multiply-adds are then reported as 0).
        activation_bytes: size of its output at this batch size.
        bytes_moved: bytes read and written by one call: inputs, weights and
            outputs.
        forward: forward (inference) timing, or None if it could not run alone.
        step: forward + backward timing (train mode), or None.
        note: why a time is missing, or anything else worth knowing.
    """

    path: str
    class_name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    macs_per_example: int
    macs_modelled: bool
    activation_bytes: int
    bytes_moved: int
    forward: timing.Timing | None
    step: timing.Timing | None
    note: str = ""
    layer: object = field(default=None, repr=False, compare=False)

    @property
    def batch_size(self) -> int:
        return int(self.input_shape[0]) if self.input_shape else 1

    @property
    def macs(self) -> int:
        """Multiply-adds of one call at this batch size."""
        return self.macs_per_example * self.batch_size

    @property
    def forward_s(self) -> float | None:
        return None if self.forward is None else self.forward.median

    @property
    def step_s(self) -> float | None:
        return None if self.step is None else self.step.median

    @property
    def backward_s(self) -> float | None:
        """Median forward + backward minus median forward; may be slightly
        negative for layers that cost next to nothing (it is noise, kept)."""
        if self.forward is None or self.step is None:
            return None
        return self.step.median - self.forward.median

    @property
    def arithmetic_intensity(self) -> float:
        """Multiply-adds per byte moved: low means memory-bound."""
        return self.macs / self.bytes_moved if self.bytes_moved else 0.0

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "class_name": self.class_name,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "params": self.params,
            "macs_per_example": self.macs_per_example,
            "macs": self.macs,
            "macs_modelled": self.macs_modelled,
            "activation_bytes": self.activation_bytes,
            "bytes_moved": self.bytes_moved,
            "arithmetic_intensity": self.arithmetic_intensity,
            "forward_s": self.forward_s,
            "backward_s": self.backward_s,
            "step_s": self.step_s,
            "forward": None if self.forward is None else self.forward.as_dict(),
            "step": None if self.step is None else self.step.as_dict(),
            "note": self.note,
        }


@dataclass(frozen=True)
class ProfileResult:
    """What ``profile`` measured: the rows, the whole model, and the settings.

    ``str(result)`` (or ``result.table()``) is the terminal table,
    ``result.to_json(path)`` and ``result.plot(path)`` write the JSON and the
    PNG bar chart, ``result.as_dict()`` is the JSON content.
    """

    model_name: str
    mode: str
    batch_size: int
    layers: tuple[LayerProfile, ...]
    model_forward: timing.Timing | None
    model_step: timing.Timing | None
    settings: dict
    environment: dict
    suggestions: tuple = ()

    def __post_init__(self):
        problems = {
            "model_name": (isinstance(self.model_name, str), "a str"),
            "mode": (self.mode in MODES, f"one of {', '.join(MODES)}"),
            "batch_size": (is_int_at_least(self.batch_size, 1), "an int >= 1"),
            "layers": (
                isinstance(self.layers, tuple | list)
                and all(isinstance(row, LayerProfile) for row in self.layers),
                "a tuple of LayerProfile",
            ),
            "settings": (isinstance(self.settings, dict), "a dict"),
            "environment": (isinstance(self.environment, dict), "a dict"),
        }
        for name, (ok, expected) in problems.items():
            if not ok:
                raise ValueError(
                    f"ProfileResult: {name} must be {expected}, received "
                    f"{name}={getattr(self, name)!r}"
                )

    def time_of(self, row: LayerProfile) -> float | None:
        """The time that counts for ``row`` in this mode: forward + backward
        in train mode, forward in inference mode."""
        return row.step_s if self.mode == "train" else row.forward_s

    @property
    def params(self) -> int:
        return sum(row.params for row in self.layers)

    @property
    def macs_per_example(self) -> int:
        return sum(row.macs_per_example for row in self.layers)

    @property
    def sum_of_layers_s(self) -> float:
        """Sum of the per-layer times (rows that could not be timed count 0)."""
        return sum(self.time_of(row) or 0.0 for row in self.layers)

    @property
    def model_s(self) -> float | None:
        """The whole model's time, measured like the layers."""
        whole = self.model_step if self.mode == "train" else self.model_forward
        return None if whole is None else whole.median

    @property
    def gap_s(self) -> float | None:
        """Whole model minus the sum of its layers (negative: the sum is more)."""
        return None if self.model_s is None else self.model_s - self.sum_of_layers_s

    def with_suggestions(self, suggestions) -> ProfileResult:
        """This result with ``suggestions`` (from ``suggest_replacements``)
        attached, so that the table and the JSON end with them."""
        return dataclasses.replace(self, suggestions=tuple(suggestions))

    def as_dict(self) -> dict:
        """Everything, raw timing samples included: the JSON content."""
        total_time = self.sum_of_layers_s
        total_params = self.params
        total_macs = self.macs_per_example
        rows = []
        for row in self.layers:
            data = row.as_dict()
            t = self.time_of(row)
            data["time_s"] = t
            data["time_share"] = (t or 0.0) / total_time if total_time else 0.0
            data["params_share"] = row.params / total_params if total_params else 0.0
            data["macs_share"] = (
                row.macs_per_example / total_macs if total_macs else 0.0
            )
            rows.append(data)
        model = self.model_step if self.mode == "train" else self.model_forward
        return {
            "kind": "fastconv.profile",
            "format_version": 1,
            "model": self.model_name,
            "mode": self.mode,
            "batch_size": self.batch_size,
            "settings": dict(self.settings),
            "environment": dict(self.environment),
            "layers": rows,
            "total": {
                "params": total_params,
                "macs_per_example": total_macs,
                "sum_of_layers_s": total_time,
                "model_s": self.model_s,
                "gap_s": self.gap_s,
                "gap_fraction": (self.gap_s / self.model_s if self.model_s else None),
                "model_forward": (
                    None if self.model_forward is None else self.model_forward.as_dict()
                ),
                "model_step": (
                    None if self.model_step is None else self.model_step.as_dict()
                ),
                "model_timing": None if model is None else model.summary(),
            },
            "suggestions": [s.as_dict() for s in self.suggestions],
        }

    def table(self) -> str:
        """The terminal table (``fastconv.profile.report.format_table``)."""
        return report.format_table(self.as_dict())

    def to_json(self, path) -> None:
        """Write ``as_dict()`` as JSON to ``path``."""
        report.write_json(self.as_dict(), path)

    def plot(self, path) -> None:
        """Write the PNG bar chart: time vs parameter vs multiply-add share."""
        report.plot(self.as_dict(), path)

    def __str__(self) -> str:
        return self.table()


# --------------------------------------------------------------- validation
def _check_mode(mode) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(
            f"profile: mode must be one of {MODES}, received mode={mode!r}"
        )
    return mode


def _check_batch_size(batch_size) -> int | None:
    if batch_size is None:
        return None
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int | np.integer)
        or batch_size < 1
    ):
        raise ValueError(
            f"profile: batch_size must be a positive int, received "
            f"batch_size={batch_size!r}"
        )
    return int(batch_size)


def _is_array(value) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _is_shape(value) -> bool:
    return isinstance(value, tuple | list) and all(
        v is None or (isinstance(v, int | np.integer) and not isinstance(v, bool))
        for v in value
    )


# ------------------------------------------------------------ sample batch
def _model_input_specs(model) -> list[tuple[tuple, str]] | None:
    """(shape with batch axis, dtype) of each model input, when Keras knows them."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs:
        return None
    return [(tuple(x.shape), x.dtype) for x in inputs]


def _random_batch(shape: Sequence[int], dtype: str, rng) -> np.ndarray:
    dtype = keras.backend.standardize_dtype(dtype)
    if "float" in dtype:
        return rng.standard_normal(tuple(shape)).astype(dtype)
    return np.zeros(tuple(shape), dtype=dtype)


def _is_sample(inputs) -> bool:
    """Whether ``inputs`` is a sample batch (arrays), not input shapes."""
    return _is_array(inputs) or (
        isinstance(inputs, list | tuple | Mapping)
        and bool(inputs)
        and all(_is_array(v) for v in keras.tree.flatten(inputs))
    )


def _sample_batch(model, inputs, batch_size: int | None, seed: int):
    """The concrete batch to profile on, and its batch size."""
    rng = np.random.default_rng(seed)
    specs = _model_input_specs(model)
    if inputs is None:
        if specs is None:
            raise ValueError(
                "profile: the model is not built and has no known input shape, "
                "received inputs=None; pass inputs=<input shape without the batch "
                "axis, e.g. (28, 28, 1)> or a sample batch"
            )
        shapes = [shape[1:] for shape, _ in specs]
        dtypes = [dtype for _, dtype in specs]
        batch = batch_size or DEFAULT_BATCH_SIZE
        arrays = [
            _random_batch((batch, *s), d, rng)
            for s, d in zip(shapes, dtypes, strict=True)
        ]
        return (arrays[0] if len(arrays) == 1 else arrays), batch
    if _is_sample(inputs):
        leaves = keras.tree.flatten(inputs)
        sizes = {int(v.shape[0]) for v in leaves if len(v.shape)}
        if len(sizes) != 1 or any(len(v.shape) == 0 for v in leaves):
            raise ValueError(
                "profile: a sample batch must have one batch size on its first "
                "axis, received inputs with shapes "
                f"{[tuple(v.shape) for v in leaves]}"
            )
        batch = sizes.pop()
        if batch_size is not None and batch_size != batch:
            raise ValueError(
                f"profile: the sample batch holds {batch} examples but batch_size="
                f"{batch_size}; give a batch of batch_size examples, or leave "
                "batch_size out"
            )
        arrays = [np.asarray(keras.ops.convert_to_numpy(v)) for v in leaves]
        for array in arrays:
            if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
                raise ValueError(
                    "profile: a sample batch must be finite, received inputs "
                    f"with NaN or Inf (shape {array.shape}, dtype {array.dtype})"
                )
        return keras.tree.pack_sequence_as(inputs, arrays), batch
    if _is_shape(inputs) and len(inputs):
        shapes = [tuple(inputs)]
    elif isinstance(inputs, list | tuple) and inputs and all(map(_is_shape, inputs)):
        shapes = [tuple(s) for s in inputs]
    else:
        raise ValueError(
            "profile: inputs must be an input shape (e.g. (28, 28, 1)), a list of "
            f"them, or a sample batch, received inputs={inputs!r}"
        )
    dtypes = [d for _, d in specs] if specs and len(specs) == len(shapes) else None
    batch = batch_size
    per_example = []
    for i, shape in enumerate(shapes):
        full_rank = (
            specs is not None and i < len(specs) and len(shape) == len(specs[i][0])
        )
        if full_rank or (shape and shape[0] is None):
            if shape[0] is not None and batch not in (None, shape[0]):
                given = "batch_size" if batch_size is not None else "another shape"
                raise ValueError(
                    f"profile: the batch axis of inputs ({shape[0]}) differs from "
                    f"the batch size of {given} ({batch}); give one, received "
                    f"inputs={inputs!r}, batch_size={batch_size!r}"
                )
            if batch is None and shape[0] is not None:
                batch = int(shape[0])
            shape = shape[1:]
        if any(v is None or v < 1 for v in shape):
            raise ValueError(
                "profile: every size of an input shape must be a positive int, "
                f"received inputs={inputs!r}"
            )
        per_example.append(tuple(int(v) for v in shape))
    batch = batch or DEFAULT_BATCH_SIZE
    arrays = [
        _random_batch((batch, *s), dtypes[i] if dtypes else "float32", rng)
        for i, s in enumerate(per_example)
    ]
    return (arrays[0] if len(arrays) == 1 else arrays), batch


# ----------------------------------------------------------------- tracing
@dataclass
class _Call:
    path: tuple[str, ...]
    op: object
    args: tuple
    kwargs: dict
    outputs: object


def _defining_class(obj, method: str) -> type:
    return next(c for c in type(obj).__mro__ if method in c.__dict__)


def _expandable(op) -> str | None:
    """``"sequential"`` or ``"functional"`` when Keras's own ``call`` runs the
    model (so its layers are what runs), else None."""
    if not isinstance(op, keras.Model):
        return None
    owner = _defining_class(op, "call")
    if not owner.__module__.startswith("keras."):
        return None
    if isinstance(op, keras.Sequential):
        return "sequential"
    if _keras_graph.is_functional(op):
        return "functional"
    return None


def _trace(op, args: tuple, kwargs: dict, path: tuple[str, ...]):
    """Run ``op(*args, **kwargs)`` in inference mode; return (leaf calls, outputs)."""
    kind = _expandable(op)
    if kind == "sequential" and op.layers:
        calls = []
        x = args[0]
        for layer in op.layers:
            sub, x = _trace(layer, (x,), {}, (*path, layer.name))
            calls.extend(sub)
        return calls, x
    if kind == "functional":
        calls = []

        def run(inner, *a, **k):
            sub, out = _trace(inner, a, k, (*path, inner.name))
            calls.extend(sub)
            return out

        return calls, _keras_graph.run_graph(op, args[0], run)
    outputs = op(*args, **kwargs)
    return [_Call(path, op, args, dict(kwargs), outputs)], outputs


# ------------------------------------------------------------- isolation
def _is_tensor(value) -> bool:
    return isinstance(value, np.ndarray) or keras.ops.is_tensor(value)


def _dtype(value) -> str:
    return keras.backend.standardize_dtype(value.dtype)


def _is_float(value) -> bool:
    return "float" in _dtype(value)


def _itemsize(dtype: str) -> int:
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype == "bool":
        return 1
    bits = re.search(r"(\d+)$", dtype)
    return int(bits.group(1)) // 8 if bits else 4


def _nbytes(value) -> int:
    return math.prod(int(d) for d in value.shape) * _itemsize(_dtype(value))


def _shape(value) -> tuple[int, ...]:
    return tuple(int(d) for d in value.shape)


def _takes_training(op) -> bool:
    call = getattr(op, "call", None)
    if call is None:
        return False
    try:
        return "training" in inspect.signature(call).parameters
    except (TypeError, ValueError):
        return False


class _Bound(keras.layers.Layer):
    """One recorded call of ``op`` as a single-input layer.

    The input ``position`` of the flattened ``(args, kwargs)`` is the layer's
    input; every other tensor is held in a variable (trainable when it is a
    float, so the backward pass computes its gradient as in the network).
    """

    def __init__(self, op, args, kwargs, position: int):
        super().__init__(name=f"bound_{getattr(op, 'name', 'op')}")
        self.op = op
        structure = (tuple(args), dict(kwargs))
        flat = keras.tree.flatten(structure)
        held = [i for i, v in enumerate(flat) if i != position and _is_tensor(v)]
        # A plain namespace: Keras's attribute tracking would wrap lists and
        # dicts, which ``keras.tree`` would then no longer see as structures.
        self._recorded = types.SimpleNamespace(
            structure=structure, flat=flat, position=position, held=held
        )
        self._held_variables = []
        for i in held:
            variable = self.add_weight(
                name=f"input_{i}",
                shape=_shape(flat[i]),
                dtype=_dtype(flat[i]),
                initializer="zeros",
                trainable=_is_float(flat[i]),
            )
            variable.assign(flat[i])
            self._held_variables.append(variable)
        self._op_training = _takes_training(op)
        self.built = True

    def call(self, inputs, training=None):
        recorded = self._recorded
        flat = list(recorded.flat)
        flat[recorded.position] = inputs
        for i, variable in zip(recorded.held, self._held_variables, strict=True):
            flat[i] = variable.value
        args, kwargs = keras.tree.pack_sequence_as(recorded.structure, flat)
        if self._op_training and training is not None:
            kwargs = {**kwargs, "training": training}
        return self.op(*args, **kwargs)


def _isolate(op, args: tuple, kwargs: dict):
    """(a single-input layer that runs this call, its input, differentiable?)."""
    flat = keras.tree.flatten((tuple(args), dict(kwargs)))
    tensors = [i for i, v in enumerate(flat) if _is_tensor(v)]
    if not tensors:
        return None, None, False
    floats = [i for i in tensors if _is_float(flat[i])]
    position = floats[0] if floats else tensors[0]
    simple = (
        isinstance(op, keras.layers.Layer)
        and len(args) == 1
        and not kwargs
        and _is_tensor(args[0])
    )
    target = op if simple else _Bound(op, args, kwargs, position)
    return target, flat[position], bool(floats)


def _try(make, target, x, jit: bool):
    """``make(target, x)`` and one call of it (compiling it), or the error text."""
    try:
        fn = make(target, x, jit=jit)
        timing.block(fn())
    except Exception as exc:  # a layer that cannot run alone is reported, not fatal
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    return fn, ""


def _cost(op, input_shape) -> tuple[int, int, bool]:
    """(params, macs per example, modelled?) of one call."""
    if not isinstance(op, keras.layers.Layer):
        return 0, 0, True
    weighted = bool(op.weights)
    known = (
        (hasattr(op, "cost") and callable(op.cost))
        or isinstance(op, _COSTED_LAYERS)
        or isinstance(op, _ZERO_MAC_LAYERS)
        or not weighted
    )
    try:
        cost = layer_cost(op, input_shape)
    except (ValueError, TypeError):
        params = sum(math.prod(v.shape) for v in op.trainable_weights)
        return int(params), 0, False
    return int(cost.params), int(cost.macs), known


def _named(calls):
    """(unique path, call, first call of its layer?) for each call."""
    counts: dict[str, int] = {}
    seen: set[int] = set()
    for call in calls:
        name = "/".join(call.path)
        count = counts.get(name, 0)
        counts[name] = count + 1
        first = id(call.op) not in seen
        seen.add(id(call.op))
        yield (f"{name}[{count}]" if count else name), call, first


def _row_data(call, name: str, first: bool) -> tuple[dict, list[str]]:
    """A row's cost fields (no times yet), and notes about them."""
    op = call.op
    tensors = [v for v in keras.tree.flatten((call.args, call.kwargs)) if _is_tensor(v)]
    outputs = [v for v in keras.tree.flatten(call.outputs) if _is_tensor(v)]
    input_shape = _shape(tensors[0]) if tensors else ()
    params, macs, modelled = _cost(op, input_shape)
    notes = []
    if not first and params:
        params = 0
        notes.append("shared layer: its parameters are counted at its first call")
    weights = op.weights if isinstance(op, keras.layers.Layer) else []
    activation = sum(_nbytes(v) for v in outputs)
    weight_bytes = sum(
        math.prod(int(d) for d in w.shape) * _itemsize(w.dtype) for w in weights
    )
    row = dict(
        path=name,
        class_name=type(op).__name__,
        input_shape=input_shape,
        output_shape=_shape(outputs[0]) if outputs else (),
        params=params,
        macs_per_example=macs,
        macs_modelled=modelled,
        activation_bytes=activation,
        bytes_moved=sum(_nbytes(v) for v in tensors) + weight_bytes + activation,
        layer=op,
    )
    return row, notes


def _timed_functions(op, args, kwargs, train: bool, jit: bool):
    """``{"forward": fn, "step": fn}`` for one call (each run once already),
    and notes on what could not be timed."""
    target, x, differentiable = _isolate(op, args, kwargs)
    if target is None:
        return {}, ["no tensor input: not timed"]
    made, notes = {}, []
    fn, error = _try(timing.make_forward, target, x, jit)
    if fn is None:
        notes.append(f"forward not timed ({error})")
    else:
        made["forward"] = fn
    if train and not differentiable:
        notes.append("no float input: backward not timed")
    elif train:
        fn, error = _try(timing.make_grad_step, target, x, jit)
        if fn is None:
            notes.append(f"backward not timed ({error})")
        else:
            made["step"] = fn
    return made, notes


def _resolve_jit(model, jit) -> bool:
    if isinstance(jit, bool):
        return jit
    if jit != "auto":
        raise ValueError(
            f"profile: jit must be True, False or 'auto', received jit={jit!r}"
        )
    if isinstance(model, keras.Model):
        return bool(model.jit_compile)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return any(d.device_type != "CPU" for d in tf.config.list_physical_devices())
    return backend == "jax"


def profile(
    model,
    inputs=None,
    *,
    mode: str = "train",
    batch_size: int | None = None,
    warmup: int = 2,
    repeats: int = 10,
    jit: bool | str = "auto",
    seed: int | None = None,
) -> ProfileResult:
    """Profile ``model`` layer by layer: cost, measured time, and their shares.

    Args:
        model: a Keras model (``Sequential``, functional, or any layer; nested
            ``Sequential`` and functional models are expanded).
        inputs: an input shape without the batch axis, like ``keras.Input``'s
            (``(28, 28, 1)``; with the batch axis if its rank is the model's
            input rank), a list of them, or a sample batch (array, or a list or
            dict of arrays). None uses the model's own input shape, which a
            model built without ``keras.Input`` does not have.
        mode: ``"train"`` (forward and backward times) or ``"inference"``.
        batch_size: examples per batch; default: the sample batch's size, the
            batch axis of ``inputs``, or 32. Refused when it differs from
            the size of a sample batch.
        warmup: unmeasured rounds before measuring (compilation, caches).
        repeats: measured rounds; each round runs every layer and the whole
            model once, in a shuffled order (``fastconv.timing.interleaved``).
        jit: compile with XLA on TensorFlow and ``jax.jit`` on JAX
            (``fastconv.timing``; PyTorch runs eagerly either way). ``"auto"``
            (the default) compiles as ``model.fit`` would: the model's
            ``jit_compile`` (Keras turns XLA off on CPU-only TensorFlow). The
            per-layer and whole-model times are always compiled alike.
        seed: seed (an int >= 0) of the random sample batch built from a
            shape; None means 0. Refused with a sample batch, which it would
            not change.

    Returns:
        A ``ProfileResult``.

    Raises:
        ValueError: on a bad ``mode``, ``batch_size``, ``warmup``, ``repeats``,
            ``jit``, ``seed`` or ``inputs`` (a sample batch with NaN or Inf, a
            sample batch or batch axis whose size differs from ``batch_size``),
            a ``seed`` given with a sample batch, or a model that is not built
            and was given no ``inputs``.
    """
    mode = _check_mode(mode)
    batch_size = _check_batch_size(batch_size)
    for name, value, low in (("warmup", warmup, 0), ("repeats", repeats, 1)):
        if not is_int_at_least(value, low):
            raise ValueError(
                f"profile: {name} must be an int >= {low}, received {name}={value!r}"
            )
    if not isinstance(model, keras.layers.Layer):
        raise ValueError(
            "profile: model must be a Keras model or layer, received "
            f"model of type {type(model).__name__}"
        )
    if seed is not None and not is_int_at_least(seed, 0):
        raise ValueError(
            f"profile: seed must be an int >= 0 or None, received seed={seed!r}"
        )
    if seed is not None and _is_sample(inputs):
        raise ValueError(
            f"profile: seed={seed!r} would be ignored: inputs is a sample batch, "
            "and seed only seeds the random batch built from an input shape; "
            "leave seed out"
        )
    jit = _resolve_jit(model, jit)
    sample, batch = _sample_batch(model, inputs, batch_size, seed or 0)
    sample = keras.tree.map_structure(keras.ops.convert_to_tensor, sample)
    try:
        model(sample, training=False)
        calls, _ = _trace(model, (sample,), {}, ())
    except Exception as exc:
        shapes = [_shape(v) for v in keras.tree.flatten(sample)]
        raise ValueError(
            f"profile: the model cannot run on inputs of shape(s) {shapes}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not _expandable(model):
        calls = [dataclasses.replace(c, path=(model.name,)) for c in calls]

    train = mode == "train"
    fns = {}
    rows = []
    for index, (name, call, first) in enumerate(_named(calls)):
        row, notes = _row_data(call, name, first)
        made, more = _timed_functions(call.op, call.args, call.kwargs, train, jit)
        fns.update({f"{index}:{kind}": fn for kind, fn in made.items()})
        rows.append({**row, "note": "; ".join(notes + more)})
    made, notes = _timed_functions(model, (sample,), {}, train, jit)
    if len(made) < (2 if train else 1):
        raise ValueError(f"profile: the whole model cannot be timed: {notes}")
    fns.update({f"model:{kind}": fn for kind, fn in made.items()})

    times = timing.interleaved(fns, warmup=warmup, repeats=repeats)
    layers = tuple(
        LayerProfile(
            **data,
            forward=times.get(f"{index}:forward"),
            step=times.get(f"{index}:step"),
        )
        for index, data in enumerate(rows)
    )
    return ProfileResult(
        model_name=model.name,
        mode=mode,
        batch_size=batch,
        layers=layers,
        model_forward=times.get("model:forward"),
        model_step=times.get("model:step"),
        settings={
            "warmup": warmup,
            "repeats": repeats,
            "jit": jit,
            "interleaved": True,
            "input_shapes": [_shape(v) for v in keras.tree.flatten(sample)],
            "backward": "median(forward + backward) - median(forward in inference)",
        },
        environment=timing.environment(),
    )
