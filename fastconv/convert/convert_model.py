"""Whole models: `convert_model` replaces chosen convolutions with fast layers.

The model's graph is walked (nested Functional and Sequential models included)
to find every 2-D convolution (and, with ``layer_types=("conv", "dense")``,
every Dense layer), its input shapes and whether another convolution lies
between it and a model input. The chosen ones are decomposed with
`decompose`; a copy of the model is then built with
``keras.models.clone_model(..., recursive=True)``: converted layers are swapped
in, every other layer is re-created from its config and given a copy of its
weights. A layer shared by several calls is converted (or copied) once and stays
shared. The user's model is only read.

Walking the graph and running it layer by layer (for the calibration batch) use
Keras internals, the ones ``clone_model`` itself is built on; they are wrapped
in `fastconv._keras_graph` (`operation_nodes` and `run_graph`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import keras
import numpy as np

from fastconv import _keras_graph, kernels, timing
from fastconv._validation import is_int, is_int_at_least, is_number
from fastconv.convert import whole_model
from fastconv.convert.decompose import (
    DENSE_METHODS,
    KERAS_CONVS,
    METHODS,
    TRANSPOSED_CONVS,
    Decomposition,
    _decompose,
    _option_names,
    _unsupported,
)
from fastconv.convert.report import ConversionReport, LayerReport
from fastconv.cost import layer_cost, spatial_dims
from fastconv.layers import BaseFastConv, LowRankDense, TuckerConv2DTranspose

__all__ = ["ConversionAccuracyWarning", "ConversionResult", "convert_model"]

#: The values of ``layer_types``: 2-D convolutions, Dense layers.
LAYER_TYPES = ("conv", "dense")

_ALL_METHODS = (*METHODS, *DENSE_METHODS)
#: The methods that convert a transposed convolution; ``"auto"`` means
#: ``"tucker"`` for it.
_TRANSPOSED_METHODS = ("tucker", "auto")

#: Warm-up rounds before the measured ones when ``min_speedup`` is given.
TIMING_WARMUP = 3

#: A converted layer whose kernel error exceeds this, or whose output error on
#: the calibration batch exceeds `OUTPUT_ERROR_WARNING`, gives a
#: `ConversionAccuracyWarning`. Chosen on a small CNN trained on MNIST
#: (docs/convert.md): the ranks that lost 14 or more points of accuracy before
#: fine-tuning were above one of them, those that lost at most one point were
#: below both.
KERNEL_ERROR_WARNING = 0.7
#: See `KERNEL_ERROR_WARNING`.
OUTPUT_ERROR_WARNING = 0.3


class ConversionAccuracyWarning(UserWarning):
    """A converted layer lost much of its original output: the new model needs
    fine-tuning (`fastconv.finetune`) or a higher rank before use."""


class ConversionResult(NamedTuple):
    """What `convert_model` returns; ``new_model, report = result`` works.

    Attributes:
        model: the new Keras model.
        report: the `ConversionReport`.
    """

    model: keras.Model
    report: ConversionReport


# --------------------------------------------------------------------- graph
def _is_conv(layer) -> bool:
    return isinstance(layer, (*KERAS_CONVS, *TRANSPOSED_CONVS, BaseFastConv))


def _is_dense(layer) -> bool:
    return isinstance(layer, keras.layers.Dense | LowRankDense)


def _never_converted(layer) -> str | None:
    """Why a convolution the report lists is never replaced, or None: a
    depthwise convolution has one small filter per channel, nothing to
    decompose, and a separable one is already factorized that way."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return "kept: DepthwiseConv2D (one filter per channel, nothing to decompose)"
    if isinstance(layer, keras.layers.SeparableConv2D):
        return "kept: SeparableConv2D (already a depthwise and a 1x1 convolution)"
    return None


def _named_never_converted(layer, what: str) -> str:
    """The message for ``what`` (``layers``, ``overrides``) naming a layer
    that `_never_converted` keeps."""
    reason = _never_converted(layer).removeprefix("kept: ")
    return (
        f"convert_model: {what} names {layer.name!r}, which convert_model never "
        f"converts: {reason}"
    )


def _is_site(layer, layer_types) -> bool:
    """Whether ``layer`` is of a type ``layer_types`` asks to convert, or a
    convolution the report lists as kept (`_never_converted`)."""
    return (
        "conv" in layer_types
        and (_is_conv(layer) or _never_converted(layer) is not None)
    ) or ("dense" in layer_types and _is_dense(layer))


@dataclasses.dataclass
class _Site:
    """A convolution (or Dense layer) of the model: where it is and how it is
    called."""

    layer: keras.layers.Layer
    path: tuple[str, ...]
    shapes: list = dataclasses.field(default_factory=list)
    upstream: list = dataclasses.field(default_factory=list)

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def full_name(self) -> str:
        return "/".join((*self.path, self.layer.name))

    @property
    def first(self) -> bool:
        """No other convolution between a model input and one of its calls."""
        return not all(self.upstream)


def _walk(
    function,
    tainted: bool,
    path,
    sites: dict,
    everything: dict,
    layer_types=("conv",),
) -> bool:
    """Visits a graph in order; ``tainted``: a conv lies upstream of its inputs.

    The layers of ``layer_types`` become sites. Returns whether a convolution
    lies upstream of any of its outputs.
    """
    taint = {id(x): tainted for x in function.inputs}
    for node in _keras_graph.operation_nodes(function):
        op = node.operation
        upstream = any(taint.get(id(x), False) for x in node.input_tensors)
        everything.setdefault(id(op), (op, path))
        inner = _keras_graph.graph(op)
        if inner is not None:
            result = _walk(
                inner, upstream, (*path, op.name), sites, everything, layer_types
            )
        else:
            if _is_site(op, layer_types):
                site = sites.setdefault(id(op), _Site(op, path))
                site.shapes.append(tuple(node.input_tensors[0].shape))
                site.upstream.append(upstream)
            result = upstream or _is_conv(op)
        for x in node.outputs:
            taint[id(x)] = result
    return any(taint.get(id(x), False) for x in function.outputs)


def _check_model(model):
    """The functional graph of ``model``, or a clear error."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            "convert_model: model must be a keras.Model (Functional or "
            f"Sequential), received an object of type {type(model).__name__}"
        )
    function = _keras_graph.graph(model)
    if isinstance(model, keras.Sequential):
        if not model.built or function is None:
            raise ValueError(
                f"convert_model: model {model.name!r} is not built; give the "
                "Sequential model a keras.Input first or call "
                "model.build(input_shape)"
            )
        return function
    if function is None:
        raise ValueError(
            f"convert_model: model {model.name!r} is a subclassed keras.Model "
            f"({type(model).__name__}) whose graph cannot be cloned; convert its "
            "layers one by one with fastconv.decompose(layer, method, rank) and "
            "use the new layers in your model's code"
        )
    return function


# ----------------------------------------------------------------- selection
@dataclasses.dataclass
class _Plan:
    """What to do with one convolution."""

    site: _Site
    selected: bool
    strict: bool  # errors raise (named explicitly) rather than keep the layer
    reason: str  # why not selected
    method: str | None = None
    rank: object = None
    options: dict = dataclasses.field(default_factory=dict)


def _names(sites) -> list[str]:
    return [site.full_name for site in sites]


def _lookup(name: str, everything: dict, sites: list, what: str) -> list:
    found = [
        layer
        for layer, path in everything.values()
        if name in (layer.name, "/".join((*path, layer.name)))
    ]
    if not found:
        raise ValueError(
            f"convert_model: {what} names {name!r}, which is no layer of the model; "
            f"its convolutions are {_names(sites)}"
        )
    return found


def _dense_not_asked(layer, layer_types, what: str) -> str | None:
    """The message for a Dense layer named by ``what`` while ``layer_types``
    leaves Dense layers out, or None."""
    if _is_dense(layer) and "dense" not in layer_types:
        return (
            f"convert_model: {what} names {layer.name!r}, a "
            f"{type(layer).__name__}; pass layer_types=('conv', 'dense') to "
            f"convert Dense layers, received layer_types={tuple(layer_types)!r}"
        )
    return None


def _matcher(layers, sites, everything, layer_types) -> tuple[Callable, bool]:
    """``(predicate on a site, strict)`` for the ``layers`` argument."""
    if layers is None:
        return (
            lambda site: isinstance(
                site.layer,
                (*KERAS_CONVS, keras.layers.Conv2DTranspose, keras.layers.Dense),
            )
        ), False
    if isinstance(layers, str | re.Pattern):
        try:
            pattern = re.compile(layers) if isinstance(layers, str) else layers
        except re.error as exc:
            raise ValueError(
                f"convert_model: layers={layers!r} is not a valid regular "
                f"expression ({exc})"
            ) from None

        def predicate(site):
            return (
                pattern.fullmatch(site.name) is not None
                or pattern.fullmatch(site.full_name) is not None
            )

        if not any(predicate(site) for site in sites):
            raise ValueError(
                f"convert_model: layers={pattern.pattern!r} matches no convolution "
                f"(the whole name must match); the convolutions are {_names(sites)}"
            )
        return predicate, False
    if callable(layers):
        return (lambda site: bool(layers(site.layer))), False
    if isinstance(layers, list | tuple | set | frozenset) and all(
        isinstance(name, str) for name in layers
    ):
        if not layers:
            raise ValueError(
                f"convert_model: layers={layers!r} names no layer; pass None for "
                f"the default choice or some of {_names(sites)}"
            )
        chosen = {
            id(layer)
            for name in layers
            for layer in _lookup(name, everything, sites, "layers")
        }
        for layer_id in chosen:
            layer = everything[layer_id][0]
            message = _dense_not_asked(layer, layer_types, "layers")
            if message is not None:
                raise TypeError(message)
            if _never_converted(layer) is not None:
                raise TypeError(_named_never_converted(layer, "layers"))
            if not _is_site(layer, layer_types):
                raise TypeError(
                    f"convert_model: layers names {layer.name!r}, a "
                    f"{type(layer).__name__}; only convolutions "
                    "(keras.layers.Conv1D, Conv2D, Conv3D and linear fastconv "
                    "layers) can be converted"
                )
        return (lambda site: id(site.layer) in chosen), True
    raise TypeError(
        "convert_model: layers must be None, a list of layer names, a regular "
        "expression (str or re.Pattern) or a predicate layer -> bool, received "
        f"layers={layers!r}"
    )


def _skip_reason(layer, method: str) -> str | None:
    """Why a layer picked by a pattern is kept rather than converted, or None."""
    if _never_converted(layer) is not None:
        return _never_converted(layer)
    if _is_dense(layer):
        if getattr(layer, "quantization_mode", None):
            return "kept: quantized"
        return None
    if isinstance(layer, TRANSPOSED_CONVS):
        if method not in _TRANSPOSED_METHODS:
            return (
                f"kept: a {type(layer).__name__} takes method 'tucker' only, "
                f"not {method!r}"
            )
        if getattr(layer, "quantization_mode", None):
            return "kept: quantized"
        return None
    if isinstance(layer, KERAS_CONVS):
        if layer.groups != 1:
            return f"kept: groups={layer.groups} (grouped convolutions unsupported)"
        if getattr(layer, "quantization_mode", None):
            return "kept: quantized"
    elif not layer.is_linear:
        return f"kept: not linear ({layer._nonlinear_reason()})"
    reason = _unsupported(method, _kernel_shape(layer))
    if reason is not None:
        return f"kept: {reason}"
    return None


def _kernel_shape(layer) -> tuple:
    if isinstance(layer, KERAS_CONVS):
        return tuple(layer.kernel.shape)
    return (*layer.kernel_size, None, layer.output_filters)


def _plan(
    sites,
    everything,
    layers,
    skip_first,
    overrides,
    method,
    rank,
    options,
    layer_types=("conv",),
):
    predicate, strict = _matcher(layers, sites, everything, layer_types)
    dense = [site for site in sites if _is_dense(site.layer)]
    classifier = dense[-1] if dense and layers is None else None
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, Mapping):
        raise TypeError(
            "convert_model: overrides must be a dict {layer name: {'method': ..., "
            f"'rank': ...}}, received overrides={overrides!r}"
        )
    overridden = {}
    for name, settings in overrides.items():
        if not isinstance(settings, Mapping):
            raise TypeError(
                f"convert_model: overrides[{name!r}] must be a dict such as "
                f"{{'method': 'cp', 'rank': 8}}, received {settings!r}"
            )
        for layer in _lookup(name, everything, sites, "overrides"):
            message = _dense_not_asked(layer, layer_types, "overrides")
            if message is not None:
                raise ValueError(message)
            if _never_converted(layer) is not None:
                raise ValueError(_named_never_converted(layer, "overrides"))
            if not _is_site(layer, layer_types):
                raise ValueError(
                    f"convert_model: overrides names {name!r}, a "
                    f"{type(layer).__name__}, which is not a convolution; the "
                    f"convolutions are {_names(sites)}"
                )
            overridden[id(layer)] = dict(settings)

    plans = []
    for site in sites:
        by_override = id(site.layer) in overridden
        if _is_dense(site.layer):
            # A Dense layer has one method, and the convolutions' options are
            # not its own.
            settings = {"method": DENSE_METHODS[0], "rank": rank}
        else:
            settings = {"method": method, "rank": rank, **options}
        settings.update(overridden.get(id(site.layer), {}))
        layer_method = settings.pop("method")
        layer_rank = settings.pop("rank")
        if isinstance(site.layer, TRANSPOSED_CONVS) and layer_method == "auto":
            # "auto" has one candidate for a transposed convolution, Tucker-2,
            # and takes only the options that Tucker-2 takes.
            layer_method = "tucker"
            tucker_options = _option_names(layer_method)
            settings = {k: v for k, v in settings.items() if k in tucker_options}
        plan = _Plan(site, False, strict or by_override, "kept: not selected")
        if by_override:
            plan.selected = True
        elif site is classifier:
            plan.reason = "kept: the last Dense layer (the classifier)"
        elif _never_converted(site.layer) is not None:
            plan.reason = _never_converted(site.layer)
        elif predicate(site):
            if skip_first and site.first and not _is_dense(site.layer):
                plan.reason = "kept: first convolution (skip_first=True)"
                if strict:
                    warnings.warn(
                        f"convert_model: layers names {site.name!r}, the first "
                        "convolution, which skip_first=True keeps; pass "
                        "skip_first=False to convert it",
                        stacklevel=3,
                    )
            else:
                plan.selected = True
        if plan.selected and not plan.strict and layer_method in _ALL_METHODS:
            reason = _skip_reason(site.layer, layer_method)
            if reason is not None:
                plan.selected, plan.reason = False, reason
        plan.method, plan.rank, plan.options = layer_method, layer_rank, settings
        if plan.selected and "max_error" in settings and layer_method != "auto":
            raise ValueError(
                f"convert_model: max_error={settings['max_error']!r} applies only to "
                f"method='auto', and layer {site.full_name!r} uses "
                f"method={layer_method!r}"
            )
        plans.append(plan)
    if (
        layers is not None
        and not strict
        and not any(p.selected and predicate(p.site) for p in plans)
    ):
        kept = {p.site.full_name: p.reason for p in plans if predicate(p.site)}
        convertible = [
            p.site.full_name
            for p in plans
            if not (skip_first and p.site.first and not _is_dense(p.site.layer))
            and p.method in _ALL_METHODS
            and _skip_reason(p.site.layer, p.method) is None
        ]
        raise ValueError(
            f"convert_model: layers={layers!r} selects no convolution that can be "
            f"converted (it matches {kept}); the convertible convolutions are "
            f"{convertible}"
        )
    return plans


# --------------------------------------------------------------- calibration
def _slice(data, start: int, stop: int):
    return keras.tree.map_structure(lambda x: x[start:stop], data)


def _length(data) -> int:
    leaves = keras.tree.flatten(data)
    if not leaves:
        raise ValueError("convert_model: calibration_data holds no arrays")
    return int(np.shape(leaves[0])[0])


def _run_recording(model, inputs, targets: set, recorded: dict, shapes: dict):
    """Runs ``model`` on ``inputs`` layer by layer, in inference mode.

    The inputs of every call of a layer whose id is in ``targets`` are appended
    to ``recorded[id]``, and the first input shape of every convolution and
    Dense layer is kept in ``shapes[id]``; nested models are run the same way.
    """

    def call(op, *args, **kwargs):
        if _keras_graph.graph(op) is not None:
            return _run_recording(op, args[0], targets, recorded, shapes)
        if _is_conv(op) or _is_dense(op):
            shapes.setdefault(id(op), (None, *args[0].shape[1:]))
        if id(op) in targets:
            recorded.setdefault(id(op), []).append(args[0])
        if _keras_graph.accepts_training(op):
            kwargs["training"] = False
        return op(*args, **kwargs)

    return _keras_graph.run_graph(model, inputs, call)


def _calibrate(model, data, targets: set, batch_size: int):
    """On ``data``: the target layers' inputs, every conv's input shape, and
    the model's outputs."""
    inputs, shapes, outputs = {}, {}, []
    total = _length(data)
    for start in range(0, total, batch_size):
        recorded = {}
        batch = _slice(data, start, start + batch_size)
        result = _run_recording(model, batch, targets, recorded, shapes)
        outputs.append(
            [keras.ops.convert_to_numpy(y) for y in keras.tree.flatten(result)]
        )
        for layer_id, calls in recorded.items():
            store = inputs.setdefault(layer_id, [[] for _ in calls])
            for i, x in enumerate(calls):
                store[i].append(keras.ops.convert_to_numpy(x))
    inputs = {
        key: [np.concatenate(parts) for parts in calls] for key, calls in inputs.items()
    }
    outputs = [np.concatenate(parts) for parts in zip(*outputs, strict=True)]
    return inputs, shapes, outputs


def _relative_error(pairs) -> float:
    """``sqrt(sum ||a - b||^2 / sum ||b||^2)`` over ``(actual, expected)`` pairs."""
    num = den = 0.0
    for actual, expected in pairs:
        actual = np.asarray(actual, dtype=np.float64)
        expected = np.asarray(expected, dtype=np.float64)
        num += float(np.sum((actual - expected) ** 2))
        den += float(np.sum(expected**2))
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return float(np.sqrt(num / den))


def _batched(layer, x, batch_size: int) -> np.ndarray:
    parts = [
        keras.ops.convert_to_numpy(layer(x[i : i + batch_size], training=False))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(parts)


def _output_error(old, new, calls, batch_size) -> float:
    return _relative_error(
        (_batched(new, x, batch_size), _batched(old, x, batch_size)) for x in calls
    )


# -------------------------------------------------------------------- timing
def _time(old, new, shape, batch_size: int, repeats: int) -> tuple[dict, str]:
    """The original's and the replacement's forward timings, and the name of the
    replacement's fastest implementation.

    The same measurement as ``implementation="auto"`` makes
    (`fastconv.kernels.measure_implementations`): every implementation of the
    new layer, interleaved with the original, on random inputs of this shape.
    A `LowRankDense` has one implementation, its two matrix products
    (``"matmul"``), and a `TuckerConv2DTranspose` one, its three products
    (``"tucker"``), timed the same way.
    """
    if isinstance(new, LowRankDense | TuckerConv2DTranspose):
        x = np.random.default_rng(0).standard_normal((batch_size, *shape[1:]))
        x = x.astype("float32")
        jit = timing.default_jit()
        fns = {"baseline": timing.make_forward(old, x, jit=jit)}
        only = "matmul" if isinstance(new, LowRankDense) else "tucker"
        fns[only] = timing.make_forward(new, x, jit=jit)
        found = timing.interleaved(fns, warmup=TIMING_WARMUP, repeats=repeats)
    else:
        found = kernels.measure_implementations(
            new,
            (batch_size, *shape[1:]),
            baseline=old,
            jit=timing.default_jit(),
            warmup=TIMING_WARMUP,
            repeats=repeats,
        )
    original = found.pop("baseline")
    best = min(found, key=lambda name: found[name].median)
    times = {"original": original.as_dict(), "replacement": found[best].as_dict()}
    return times, best


def _known(shape, layer) -> bool:
    """Whether ``shape`` gives every size ``layer``'s cost needs."""
    if _is_dense(layer):
        return len(shape) >= 2 and all(is_int_at_least(v, 1) for v in shape[1:])
    try:
        spatial_dims(shape, layer.data_format)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------- helpers
def _check_args(method, min_speedup, batch_size, skip_first, timing_repeats):
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(
            f"convert_model: method must be one of {', '.join(map(repr, METHODS))}, "
            f"received method={method!r}"
        )
    if min_speedup is not None and not (
        is_number(min_speedup) and 0 < min_speedup < float("inf")
    ):
        raise ValueError(
            "convert_model: min_speedup must be None or a positive finite number, "
            f"received min_speedup={min_speedup!r}"
        )
    for name, value in (("batch_size", batch_size), ("timing_repeats", timing_repeats)):
        if not is_int_at_least(value, 1):
            raise ValueError(
                f"convert_model: {name} must be a positive int, received "
                f"{name}={value!r}"
            )
    if not isinstance(skip_first, bool):
        raise TypeError(
            "convert_model: skip_first must be a bool, received "
            f"skip_first={skip_first!r}"
        )


def _check_layer_types(layer_types, owner: str = "convert_model") -> tuple[str, ...]:
    """``layer_types`` as a tuple of distinct values of `LAYER_TYPES`, or an
    error naming ``owner`` and the argument."""
    if (
        isinstance(layer_types, str)
        or not isinstance(layer_types, Sequence)
        or not layer_types
        or not all(kind in LAYER_TYPES for kind in layer_types)
        or len(set(layer_types)) != len(layer_types)
    ):
        raise ValueError(
            f"{owner}: layer_types must be a non-empty tuple of distinct "
            f"values among {LAYER_TYPES}, such as ('conv', 'dense'), received "
            f"layer_types={layer_types!r}"
        )
    return tuple(layer_types)


def _check_rank(rank) -> None:
    """Refuses a numeric rank of no valid form before any layer is decomposed.
    A rule (a str) and whether a rank suits each layer's method and kernel are
    checked per layer, with the layer's name in the message."""
    if rank is None or isinstance(rank, str):
        return
    if isinstance(rank, tuple | list):
        valid = len(rank) == 2 and all(is_int_at_least(v, 1) for v in rank)
    elif is_int(rank):
        valid = rank >= 1
    else:
        valid = is_number(rank) and 0 < rank <= 1
    if not valid:
        raise ValueError(
            "convert_model: rank must be an int >= 1, a float in (0, 1], a pair "
            "of ints (Tucker), 'vbmf' or 'energy:<fraction>', received "
            f"rank={rank!r}"
        )


def _check_random_state(options: Mapping) -> None:
    """Refuses a bad ``random_state`` before any layer is decomposed."""
    if "random_state" not in options:
        return
    value = options["random_state"]
    if value is None or isinstance(value, np.random.Generator):
        return
    if not is_int_at_least(value, 0):
        raise ValueError(
            "convert_model: random_state must be None, a non-negative int or a "
            f"numpy.random.Generator, received random_state={value!r}"
        )


def _check_calibration(data) -> None:
    """Refuses calibration data that would give no or NaN errors: a path or
    text instead of arrays, no arrays, no examples, arrays of different
    lengths, or NaN/Inf in an array."""
    if isinstance(data, str | bytes | os.PathLike):
        raise TypeError(
            "convert_model: calibration_data must be the model's inputs (an "
            "array, or a list or dict of arrays), received a "
            f"{type(data).__name__} {data!r}; load the file first (np.load)"
        )
    leaves = keras.tree.flatten(data)
    if not leaves:
        raise ValueError("convert_model: calibration_data holds no arrays")
    lengths = {int(np.shape(leaf)[0]) if np.ndim(leaf) else 0 for leaf in leaves}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(
            "convert_model: calibration_data must hold at least one example, with "
            f"the same number in every array, received lengths {sorted(lengths)}"
        )
    for leaf in leaves:
        if isinstance(leaf, np.ndarray) and leaf.dtype.kind == "f":
            if not np.all(np.isfinite(leaf)):
                raise ValueError(
                    "convert_model: calibration_data holds NaN or Inf; the errors "
                    "measured on it would be NaN"
                )


def _check_calibration_shapes(data, model) -> None:
    """Refuses calibration arrays whose number or example shapes differ from
    the model's inputs (where the model knows them)."""
    expected = [tuple(x.shape[1:]) for x in getattr(model, "inputs", None) or []]
    leaves = keras.tree.flatten(data)
    if not expected:
        return
    if len(leaves) != len(expected):
        raise ValueError(
            f"convert_model: calibration_data holds {len(leaves)} arrays; model "
            f"{model.name!r} takes {len(expected)} inputs"
        )
    if isinstance(data, Mapping):  # keyed by input name, not in input order
        return
    for leaf, shape in zip(leaves, expected, strict=True):
        got = tuple(np.shape(leaf)[1:])
        if len(got) != len(shape) or any(
            want is not None and want != size
            for want, size in zip(shape, got, strict=True)
        ):
            raise ValueError(
                f"convert_model: calibration_data has examples of shape {got}; "
                f"model {model.name!r} takes {shape}"
            )


def _progress(total: int, progress):
    from tqdm.auto import tqdm

    if progress not in (None, True, False):
        raise TypeError(
            f"convert_model: progress must be None, True or False, received "
            f"progress={progress!r}"
        )
    # None: a bar only for a conversion that takes more than a moment.
    return tqdm(
        total=total,
        desc="convert_model",
        unit="layer",
        disable=progress is False,
        delay=0 if progress else 1.0,
        leave=False,
    )


def _clone(model, replacements: dict) -> keras.Model:
    copies = []

    def clone_function(layer):
        if id(layer) in replacements:
            return replacements[id(layer)]
        try:
            new = layer.__class__.from_config(layer.get_config())
        except Exception as exc:
            raise ValueError(
                f"convert_model: layer {layer.name!r} ({type(layer).__name__}) "
                f"cannot be re-created from its config ({type(exc).__name__}: {exc}); "
                "convert_model copies every layer it keeps, so every layer needs a "
                "working get_config/from_config. Convert the convolutions one by "
                "one with fastconv.decompose instead"
            ) from exc
        if isinstance(layer, keras.layers.Layer):
            # An operation applied to a tensor (``x + 3.0``) has no weights.
            copies.append((layer, new))
        return new

    new_model = keras.models.clone_model(
        model, clone_function=clone_function, recursive=True
    )
    for old, new in copies:
        weights = old.get_weights()
        if len(new.weights) != len(weights):
            raise ValueError(
                f"convert_model: the copy of layer {old.name!r} "
                f"({type(old).__name__}) has {len(new.weights)} weights after "
                f"cloning, the original {len(weights)}; it cannot be copied exactly"
            )
        new.set_weights(weights)
    return new_model


# ---------------------------------------------------------------------- API
def convert_model(
    model,
    method: str | None = None,
    rank=None,
    *,
    layers=None,
    skip_first: bool = True,
    overrides: Mapping[str, Mapping] | None = None,
    min_speedup: float | None = None,
    calibration_data=None,
    batch_size: int = 32,
    timing_repeats: int = 10,
    progress: bool | None = None,
    data=None,
    target_speedup: float | None = None,
    max_accuracy_drop: float | None = None,
    methods: Sequence[str] | None = None,
    ranks: Sequence | None = None,
    layer_types: Sequence[str] = ("conv",),
    fold_batchnorm: bool = False,
    verify_whole_model: bool | None = None,
    **options,
) -> ConversionResult:
    """A copy of a model with its convolutions replaced by decomposed layers.

    Which convolutions: by default every ``keras.layers.Conv2D`` (``Conv1D``,
    ``Conv3D``: ``"cp"`` and ``"tucker"`` only, see `decompose`) except the
    first ones (those with no other convolution between them and a model
    input: their few input channels leave little to gain and much to lose);
    grouped convolutions, and 1x1 kernels for ``"cp"``/``"factorized"``, are
    kept with the reason in the report. ``layers`` narrows or widens the choice
    (fastconv layers, e.g. a `TuckerConv2D` to re-decompose, can be chosen
    explicitly); ``overrides`` sets the method, rank or options of single
    layers and always converts them. Each chosen layer goes through
    `fastconv.decompose` with ``method``, ``rank`` and ``options``.

    A ``keras.layers.Conv2DTranspose`` is chosen like a ``Conv2D`` and
    becomes a `TuckerConv2DTranspose` when ``method`` is ``"tucker"`` or
    ``"auto"`` (its one candidate); with another method it is kept, with the
    reason in the report.

    With ``layer_types=("conv", "dense")``, Dense layers are converted too, each
    into a `LowRankDense` by truncated SVD (``method="svd"``, whatever
    ``method`` says for the convolutions; ``rank`` applies, ``options`` do
    not). By default every ``keras.layers.Dense`` is chosen but the last one
    in the graph, the classifier, kept with the reason in the report: its
    output is the model's prediction, and its few units leave a low rank
    little to save (a rank saves multiply-adds only below
    ``features units / (features + units)``, which is under ``units``).
    ``layers`` and ``overrides`` can name any Dense layer, the last included;
    ``skip_first`` does not apply to Dense layers, and ``min_speedup`` does.

    With ``min_speedup``, a layer is replaced only if its replacement's forward
    pass is at least that many times faster than the original's, both measured
    here (this device, this backend) on a batch of ``batch_size`` inputs of the
    layer's input shape; with ``min_speedup >= 1``, a replacement that does no
    fewer multiply-adds is kept without timing (the timing of small layers is
    mostly noise: on keras.applications models, noise alone made such
    replacements "win"). The replacement is timed at its fastest implementation,
    by the same measurement ``implementation="auto"`` makes
    (`fastconv.kernels.measure_implementations`, interleaved with the
    original); the times and the implementation are in the report. Both are
    compiled as Keras runs a model here by default (`fastconv.timing.default_jit`:
    XLA on JAX, and on TensorFlow only with a GPU).

    Layers measured alone do not add up to a model, so with ``min_speedup``
    the new model is then timed whole against the original
    (``verify_whole_model``, on by default; `fastconv.convert.whole_model`):
    if it is slower than ``min(1, min_speedup)`` times the original, the half
    of the replaced layers that save the fewest multiply-adds are put back and
    the model is timed again, up to ``WHOLE_MODEL_ROUNDS`` times, after which
    every replacement is put back. ``report.whole_model`` holds each round.

    The model itself is never modified. Layers that are not converted are
    re-created from their configs and get exact copies of their weights; a
    shared layer is converted (or copied) once and stays shared; nested
    Functional and Sequential models are converted inside. The new model keeps
    the original's compile settings, and saves to ``.keras`` and loads back with
    no ``custom_objects``.

    With ``data=(x, y)`` (labelled examples the model takes), the method and
    rank of each layer are searched for instead of given
    (`fastconv.convert.search`): every candidate of ``methods`` x ``ranks`` is
    tried on each layer alone, its accuracy drop measured on ``data`` and its
    forward time saved measured here at ``batch_size``; the predicted time of a
    choice is the original model's measured time minus the savings, its
    predicted drop the sum of the drops. With ``target_speedup`` the search
    reaches that predicted whole-model speedup with the least summed drop; with
    ``max_accuracy_drop`` (``0.01`` by default when neither is given) it takes
    the largest predicted speedup within that drop. The chosen model is then
    measured (whole-model speedup, interleaved with the original, and accuracy
    on ``data``), and ``report.search`` holds the prediction and what was
    achieved; a miss is reported there, not raised. ``method``, ``rank``,
    ``overrides`` and ``min_speedup`` do not apply to a search.

    A converted layer whose kernel error exceeds ``KERNEL_ERROR_WARNING``
    (0.7), or whose output error on the calibration batch exceeds
    ``OUTPUT_ERROR_WARNING`` (0.3), gives a
    `ConversionAccuracyWarning` naming the layers and what to do next
    (``report.advice`` holds the same words): fine-tune the new model, or raise
    the rank.

    Args:
        model: a built Functional or Sequential ``keras.Model``.
        method: ``"tucker"`` (default), ``"cp"``, ``"factorized"``,
            ``"separable"`` or ``"auto"`` (see `fastconv.decompose`); not
            with ``data`` (give ``methods``).
        rank: for every converted layer, in any form
            `fastconv.decomposition.resolve_rank` takes; None (the default)
            for each layer's method's default rank
            (`fastconv.convert.decompose.DEFAULT_RANKS`: ``0.25`` for
            ``"cp"``, ``"energy:0.9"`` for the others); not with ``data``
            (give ``ranks``).
        layers: None (the default choice above), a list of layer names (each
            must name a convolution), a regular expression that a layer's whole
            name (or ``model/layer`` path) must match, or a predicate
            ``layer -> bool``. ``skip_first`` applies to all of them.
        skip_first: keep the first convolutions (default True).
        overrides: ``{layer name: {"method": ..., "rank": ..., option: ...}}``.
        min_speedup: None, or the least measured forward speedup for a layer
            to be replaced, e.g. ``1.2``.
        verify_whole_model: with ``min_speedup``, time the whole new model
            against the original and put layers back until it is not slower
            (see above). None (the default) means True with ``min_speedup``;
            True without it is refused.
        calibration_data: optional model inputs (an array, or a list or dict of
            arrays for several inputs): a batch on which the report gives each
            converted layer's output error, on its own inputs, and the new
            model's output error; it also gives input sizes the graph leaves
            unknown.
        batch_size: batch size of the timed runs and of the calibration runs.
        timing_repeats: measured rounds per layer with ``min_speedup``.
        progress: a tqdm progress bar: None shows one only after a second,
            True always, False never.
        data: ``(x, y)``, inputs and class labels (integers or one-hot rows)
            of a model with one input and one ``(N, classes)`` output: turns on
            the search. Its first ``batch_size`` inputs also serve as the
            calibration batch when ``calibration_data`` is not given.
        target_speedup: the whole-model forward speedup to reach (> 1).
        max_accuracy_drop: the accuracy the search may lose, as a fraction
            (``0.01``: one point); the default with ``data`` and no target.
        methods: the methods the search tries (default ``("cp", "tucker")``).
        layer_types: which layers to convert: ``("conv",)`` (the default,
            2-D convolutions), ``("dense",)`` or ``("conv", "dense")``; with
            ``data``, the search tries each Dense layer with ``"svd"`` at
            each of ``ranks``.
        ranks: the ranks the search tries for each method (default
            ``(0.1, 0.25, 0.5, "vbmf")``).
        fold_batchnorm: first fold every ``BatchNormalization`` that directly
            follows a convolution into it (`fastconv.fold_batchnorm`), then
            convert the folded model; ``report.folded_batchnorm`` lists the
            pairs. Default False.
        **options: passed to `fastconv.decompose` for every layer (e.g.
            ``random_state``, ``n_iter_max``, ``max_error``).

    Returns:
        A `ConversionResult`: ``.model``, the new model, and ``.report``, a
        `ConversionReport` (``print(report)`` shows a table). It unpacks:
        ``new_model, report = convert_model(...)``.

    Raises:
        TypeError: ``model`` is not a keras.Model, or a malformed ``layers``,
            ``overrides`` or option.
        ValueError: an unbuilt or subclassed model, an unknown method or layer
            name, a bad rank, or any `fastconv.decompose` error, naming the layer;
            both targets, a target without ``data``, ``data`` the model cannot
            take, or a ``target_speedup`` that even the fastest candidates do
            not reach (the message gives the best predicted speedup).

    Example:
        >>> import keras, fastconv
        >>> inputs = keras.Input((16, 16, 3))
        >>> x = keras.layers.Conv2D(16, 3, padding="same")(inputs)
        >>> outputs = keras.layers.Conv2D(16, 3, padding="same")(x)
        >>> model = keras.Model(inputs, outputs)
        >>> new_model, report = fastconv.convert_model(model, "tucker", rank=(4, 4))
        >>> [row.decision for row in report.rows]
        ['kept: first convolution (skip_first=True)', 'converted']
    """
    searching = any(
        value is not None for value in (data, target_speedup, max_accuracy_drop)
    )
    _check_search_choice(searching, method, rank, methods, ranks)
    method = "tucker" if method is None else method
    _check_args(method, min_speedup, batch_size, skip_first, timing_repeats)
    verify_whole_model = _check_verify(verify_whole_model, min_speedup)
    _check_rank(rank)
    _check_random_state(options)
    if not isinstance(fold_batchnorm, bool):
        raise TypeError(
            "convert_model: fold_batchnorm must be a bool, received "
            f"fold_batchnorm={fold_batchnorm!r}"
        )
    layer_types = _check_layer_types(layer_types)
    if searching:
        methods, ranks = _check_search(
            data, target_speedup, max_accuracy_drop, methods, ranks, overrides
        )
        if min_speedup is not None:
            raise ValueError(
                "convert_model: min_speedup does not apply to a search (data=...); "
                "ask for target_speedup instead"
            )
        if target_speedup is None and max_accuracy_drop is None:
            max_accuracy_drop = _search().DEFAULT_MAX_ACCURACY_DROP
    if calibration_data is not None:
        _check_calibration(calibration_data)
    function = _check_model(model)
    original, folded = model, None
    if fold_batchnorm:
        model, folded = _fold(model)
        function = _check_model(model)
    if searching:
        x, labels = _search().check_data(model, data)
        if calibration_data is None:
            calibration_data = x[:batch_size]
    if calibration_data is not None:
        _check_calibration_shapes(calibration_data, model)
    sites, everything = {}, {}
    _walk(function, False, (), sites, everything, layer_types)
    sites = list(sites.values())
    if not sites:
        kinds = {
            "conv": "keras.layers.Conv1D, Conv2D, Conv3D or linear fastconv layer",
            "dense": "keras.layers.Dense or LowRankDense",
        }
        raise ValueError(
            f"convert_model: model {model.name!r} has no convolution to convert "
            f"(no {' and no '.join(kinds[kind] for kind in layer_types)} in its "
            f"graph; layer_types={layer_types!r})"
        )
    plans = _plan(
        sites,
        everything,
        layers,
        skip_first,
        overrides,
        method,
        rank,
        options,
        layer_types,
    )
    searched = None
    if searching:
        searched = _choose(
            model,
            plans,
            x,
            labels,
            target_speedup,
            max_accuracy_drop,
            methods,
            ranks,
            batch_size,
            timing_repeats,
            options,
            layer_types,
        )
    chosen = [plan for plan in plans if plan.selected]

    inputs, shapes, reference = {}, {}, None
    if calibration_data is not None:
        targets = {id(plan.site.layer) for plan in chosen}
        inputs, shapes, reference = _calibrate(
            model, calibration_data, targets, batch_size
        )

    rows, replacements, replaced = [], {}, []
    with _progress(len(chosen), progress) as bar:
        for plan in plans:
            if plan.selected:
                bar.set_postfix_str(plan.site.name, refresh=False)
            rows.append(
                _convert_one(
                    plan,
                    inputs.get(id(plan.site.layer)),
                    shapes.get(id(plan.site.layer)),
                    min_speedup,
                    batch_size,
                    timing_repeats,
                    replacements,
                )
            )
            if plan.selected:
                bar.update()
            if rows[-1].converted:
                replaced.append((rows[-1], id(plan.site.layer)))

    new_model = _clone(model, replacements)
    whole = None
    if verify_whole_model:
        new_model, whole = whole_model.check(
            model,
            new_model,
            replaced,
            replacements,
            _clone,
            whole_model.example_inputs(model, calibration_data, batch_size),
            min_speedup=min_speedup,
            batch_size=batch_size,
            repeats=timing_repeats,
            jit=timing.default_jit(),
        )
    output_error = None
    if calibration_data is not None:
        new_outputs = _predict(new_model, calibration_data, batch_size)
        output_error = [
            _relative_error([(new, old)])
            for new, old in zip(new_outputs, reference, strict=True)
        ]
    settings = {
        "method": method,
        "rank": rank,
        "skip_first": skip_first,
        "min_speedup": min_speedup,
        "verify_whole_model": verify_whole_model,
        "batch_size": batch_size,
        "layers": None if layers is None else repr(layers),
        "layer_types": layer_types,
        "overrides": {k: dict(v) for k, v in (overrides or {}).items()},
        "options": options,
    }
    if searched is not None:
        for row in rows:
            option = searched.chosen.get(row.full_name)
            if row.converted and option is not None:
                row.decision = (
                    f"converted: searched (alone: drop "
                    f"{100 * option.accuracy_drop:+.2f} points, saves "
                    f"{1e3 * option.saved:.3g} ms per batch)"
                )
        _search().verify(
            searched, model, new_model, x, labels, batch_size, timing_repeats
        )
        settings.update(
            method=None,
            rank=None,
            target_speedup=target_speedup,
            max_accuracy_drop=max_accuracy_drop,
            methods=methods,
            ranks=ranks,
        )
    report = ConversionReport(
        rows=rows,
        settings=settings,
        params_before=int(original.count_params()),
        params_after=int(new_model.count_params()),
        output_error=output_error,
        environment=timing.environment(),
        search=None if searched is None else searched.to_dict(),
        search_summary=None if searched is None else searched.summary(),
        advice=_advice(rows),
        folded_batchnorm=folded,
        whole_model=whole,
    )
    if report.advice is not None:
        warnings.warn(ConversionAccuracyWarning(report.advice), stacklevel=2)
    return ConversionResult(new_model, report)


def _fold(model) -> tuple[keras.Model, list[tuple[str, str]]]:
    """`fastconv.fold_batchnorm` of ``model``: the folded copy and the folded
    pairs; imported when needed, as it builds on `convert_model`'s cloning."""
    from fastconv.convert.fold import fold_batchnorm

    folded, report = fold_batchnorm(model)
    return folded, report.folded


def _search():
    """`fastconv.convert.search`, imported when needed: it builds on
    `convert_model` itself."""
    from fastconv.convert import search

    return search


def _check_verify(verify_whole_model, min_speedup) -> bool:
    """``verify_whole_model`` resolved: None means on with ``min_speedup``."""
    if verify_whole_model is None:
        return min_speedup is not None
    if not isinstance(verify_whole_model, bool):
        raise TypeError(
            "convert_model: verify_whole_model must be None, True or False, "
            f"received verify_whole_model={verify_whole_model!r}"
        )
    if verify_whole_model and min_speedup is None:
        raise ValueError(
            "convert_model: verify_whole_model=True applies only with "
            "min_speedup (the threshold the whole model is held to); received "
            "min_speedup=None"
        )
    return verify_whole_model


def _check_search_choice(searching, method, rank, methods, ranks) -> None:
    """Refuses an explicit method or rank with a search, and candidates
    (methods, ranks) without one: either would be dropped silently."""
    if searching:
        given = [
            f"{name}={value!r}"
            for name, value in (("method", method), ("rank", rank))
            if value is not None
        ]
        if given:
            raise ValueError(
                f"convert_model: {' and '.join(given)} do not apply to a search "
                "(data=...): the search chooses each layer's method and rank among "
                "methods and ranks; give those instead"
            )
        return
    given = [
        f"{name}={value!r}"
        for name, value in (("methods", methods), ("ranks", ranks))
        if value is not None
    ]
    if given:
        raise ValueError(
            f"convert_model: {' and '.join(given)} apply only to a search: give "
            "data=(x, y), or method= and rank= for one conversion"
        )


def _check_search(data, target_speedup, max_accuracy_drop, methods, ranks, overrides):
    """Refuses a search asked for with missing or conflicting arguments;
    returns the candidate methods and ranks."""
    search = _search()
    search.check_targets(target_speedup, max_accuracy_drop)
    if data is None:
        given = "target_speedup" if target_speedup is not None else "max_accuracy_drop"
        value = target_speedup if target_speedup is not None else max_accuracy_drop
        raise ValueError(
            f"convert_model: {given}={value!r} needs data=(x, y) to measure "
            "accuracy: labelled examples the model takes, e.g. a validation split"
        )
    if overrides:
        raise ValueError(
            "convert_model: overrides do not apply to a search (data=...): the "
            "search chooses each layer's method and rank"
        )
    return search.check_candidates(
        search.DEFAULT_METHODS if methods is None else methods,
        search.DEFAULT_RANKS if ranks is None else ranks,
    )


def _choose(model, plans, x, labels, target_speedup, max_accuracy_drop, *rest):
    """Measures the candidates of the selected layers, chooses, and sets each
    plan to its choice; returns the `SearchResult` (not yet verified)."""
    methods, ranks, batch_size, repeats, options, layer_types = rest
    search = _search()
    names = [plan.site.full_name for plan in plans if plan.selected]
    found, original = search.measure(
        model,
        x,
        labels,
        names,
        methods=methods,
        ranks=ranks,
        batch_size=batch_size,
        repeats=repeats,
        options=options,
        layer_types=layer_types,
    )
    model_time, calibration = search.calibrate(
        model,
        found,
        x,
        batch_size=batch_size,
        repeats=repeats,
        method_options=options,
        layer_types=layer_types,
    )
    scale = 1.0 if calibration is None else calibration["scale"]
    picks = search.choose(
        found,
        model_time,
        target_speedup=target_speedup,
        max_accuracy_drop=max_accuracy_drop,
        scale=scale,
    )
    picks = {name: picks.get(name) for name in names}
    for plan in plans:
        if not plan.selected:
            continue
        option = picks[plan.site.full_name]
        if option is None:
            plan.selected, plan.reason = False, "kept: the search keeps it"
        else:
            plan.method, plan.rank = option.method, option.rank
            plan.options = options if option.method in ("cp", "tucker") else {}
    speedup, drop = search._predicted(model_time, picks.values(), scale)
    target = (
        {"target_speedup": target_speedup}
        if target_speedup is not None
        else {"max_accuracy_drop": max_accuracy_drop}
    )
    return search.SearchResult(
        target=target,
        options=found,
        chosen=picks,
        model_time=model_time,
        original_accuracy=original,
        predicted_speedup=speedup,
        predicted_accuracy_drop=drop,
        calibration=calibration,
    )


def _advice(rows) -> str | None:
    """What to do next when converted layers lost much of their output."""
    bad = []
    for row in rows:
        if not row.converted:
            continue
        found = [
            f"{kind} error {error:.2f}"
            for kind, error, limit in (
                ("kernel", row.kernel_error, KERNEL_ERROR_WARNING),
                ("output", row.output_error, OUTPUT_ERROR_WARNING),
            )
            if error is not None and error > limit
        ]
        if found:
            bad.append(f"{row.full_name} ({', '.join(found)})")
    if not bad:
        return None
    return (
        f"convert_model: {len(bad)} converted layer(s) have a relative kernel error "
        f"above {KERNEL_ERROR_WARNING} or output error above "
        f"{OUTPUT_ERROR_WARNING}: {', '.join(bad)}; the new model may have lost "
        "much of its accuracy. Next: fine-tune it, "
        "fastconv.finetune(new_model, x_train, y_train, epochs=1), or convert "
        "with a higher rank (rank=0.5)"
    )


def _predict(model, data, batch_size) -> list[np.ndarray]:
    parts = []
    for start in range(0, _length(data), batch_size):
        result = model(_slice(data, start, start + batch_size), training=False)
        parts.append(
            [keras.ops.convert_to_numpy(y) for y in keras.tree.flatten(result)]
        )
    return [np.concatenate(outputs) for outputs in zip(*parts, strict=True)]


def _convert_one(plan, calls, seen, min_speedup, batch_size, repeats, replacements):
    """Decomposes, measures and decides for one convolution; returns its row.

    ``calls``: its inputs on the calibration batch, per call, or None; ``seen``:
    the input shape the calibration batch gave it, or None.
    """
    site, layer = plan.site, plan.site.layer
    shape = site.shapes[0]
    if seen is not None and not _known(shape, layer):
        shape = tuple(seen)
    known = _known(shape, layer)
    row = LayerReport(
        name=layer.name,
        path="/".join(site.path),
        type=type(layer).__name__,
        calls=len(site.shapes),
        input_shape=shape,
        decision=plan.reason,
        params_before=int(layer.count_params()),
        macs_before=layer_cost(layer, shape).macs if known else None,
    )
    if not plan.selected:
        return row
    found: Decomposition = _decompose(
        layer,
        plan.method,
        plan.rank,
        input_shape=shape if known else None,
        **plan.options,
    )
    new = found.layer
    row.method, row.rank = found.method, found.rank
    row.new_name, row.new_type = new.name, type(new).__name__
    row.params_after = int(new.count_params())
    row.macs_after = new.cost(shape).macs if known else None
    row.kernel_error = found.relative_error
    row.candidates = found.candidates
    if calls is not None:
        row.output_error = _output_error(layer, new, calls, batch_size)
    row.converted, row.decision = True, "converted"
    if min_speedup is not None:
        if not known:
            raise ValueError(
                f"convert_model: min_speedup needs the input size of layer "
                f"{layer.name!r}, which the model leaves unknown ({shape}); pass "
                "calibration_data so that convert_model sees real sizes"
            )
        if min_speedup >= 1 and row.macs_after >= row.macs_before:
            # Timing a layer of a million multiply-adds is mostly call overhead
            # and noise; one that does no less work is not replaced on it.
            row.converted = False
            row.decision = (
                f"kept: the replacement does no fewer multiply-adds "
                f"({row.macs_after:,} >= {row.macs_before:,}), so it is not "
                f"timed against min_speedup {min_speedup}x"
            )
            return row
        times, implementation = _time(layer, new, shape, batch_size, repeats)
        row.time_before, row.time_after = times["original"], times["replacement"]
        row.speedup = times["original"]["median_s"] / times["replacement"]["median_s"]
        measured = f"{row.speedup:.2f}x ({implementation})"
        if row.speedup >= min_speedup:
            row.decision = f"converted: {measured} >= {min_speedup}x"
        else:
            row.converted = False
            row.decision = f"kept: {measured} < min_speedup {min_speedup}x"
    if row.converted:
        replacements[id(layer)] = new
    return row
