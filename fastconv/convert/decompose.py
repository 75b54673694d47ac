"""One trained convolution in, one fast layer out: `decompose`.

`decompose(layer, method, rank)` reads a built ``keras.layers.Conv2D`` (or a
linear fastconv layer, through its ``dense_kernel()``), decomposes its kernel in
float64 with `fastconv.decomposition`, and returns a new, built fastconv layer
with the decomposed factors, the original bias, strides, padding, dilation, data
format, activation and dtype policy. A built ``keras.layers.Dense`` (or a
`LowRankDense`) becomes a `LowRankDense` by truncated SVD, ``method="svd"``.
This module is where the decompositions (floor 1) and the layers (floor 2)
meet; `convert_model` calls it once per layer.

Example:
    >>> import keras, fastconv
    >>> conv = keras.layers.Conv2D(32, 3, padding="same")
    >>> conv.build((None, 16, 16, 16))
    >>> fast = fastconv.decompose(conv, "tucker", rank=(8, 8))
    >>> type(fast).__name__, fast.name == conv.name + "_tucker"
    ('TuckerConv2D', True)
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import re
import warnings

import keras
import numpy as np

from fastconv import _keras_graph
from fastconv._validation import is_number
from fastconv.cost import spatial_shape
from fastconv.decomposition import (
    RankClampedWarning,
    cp_decompose,
    low_rank_decompose,
    separable_decompose,
    spatial_svd_decompose,
    tucker2_decompose,
)
from fastconv.decomposition import resolve_rank as _resolve_rank
from fastconv.decomposition.cp import cp_axes_decompose
from fastconv.layers import (
    BaseFastConv,
    CPConv1D,
    CPConv2D,
    CPConv3D,
    DepthwiseSeparableConv2D,
    FactorizedConv2D,
    LowRankDense,
    TuckerConv1D,
    TuckerConv2D,
    TuckerConv2DTranspose,
    TuckerConv3D,
)

__all__ = [
    "AUTO_MAX_ERROR",
    "DEFAULT_RANKS",
    "DENSE_METHODS",
    "METHODS",
    "Decomposition",
    "decompose",
    "default_rank",
    "parse_rank",
]

#: The values of ``method``; ``"auto"`` picks one of the others per layer.
METHODS = ("cp", "tucker", "factorized", "separable", "auto")
#: The values of ``method`` for a ``keras.layers.Dense``: a truncated SVD.
DENSE_METHODS = ("svd",)
#: Each method's rank when none is given, chosen from the rank sweeps on the
#: trained MNIST and Fashion-MNIST references (docs/tradeoffs.md, "The default
#: rank"): the rule that lost least before any fine-tuning for a useful
#: speedup. CP keeps a quarter of the parameters (the energy rule, computed on
#: an unfolding, does not bound CP's error); the SVD-based methods keep 90% of
#: the spectral energy, which adapts the rank to each kernel: a kernel that
#: compresses badly (an undertrained layer) keeps a high rank instead of losing
#: the accuracy, as ``"vbmf"`` (the default before) did. A Dense layer's
#: truncated SVD (``"svd"``) keeps 90% of the energy too.
DEFAULT_RANKS = {
    "cp": 0.25,
    "tucker": "energy:0.9",
    "factorized": "energy:0.9",
    "separable": "energy:0.9",
    "auto": "energy:0.9",
    "svd": "energy:0.9",
}
#: ``method="auto"``: the largest kernel error a candidate may have.
AUTO_MAX_ERROR = 0.3

_LAYERS = {
    "cp": CPConv2D,
    "tucker": TuckerConv2D,
    "factorized": FactorizedConv2D,
    "separable": DepthwiseSeparableConv2D,
}
#: The layers of the methods that take 1-D and 3-D convolutions, by rank.
_LAYERS_ND = {
    "cp": {1: CPConv1D, 3: CPConv3D},
    "tucker": {1: TuckerConv1D, 3: TuckerConv3D},
}
#: The options of ``"cp"`` for a kernel with 1 or 3 spatial axes
#: (``decomposition.cp.cp_axes_decompose``).
_ND_CP_OPTIONS = ("n_iter_max", "tol")
#: The Keras convolutions that decompose takes.
KERAS_CONVS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_DECOMPOSERS = {
    "cp": cp_decompose,
    "tucker": tucker2_decompose,
    "factorized": spatial_svd_decompose,
    "separable": separable_decompose,
}
# Layers that look like convolutions but are not what decompose takes.
_OTHER_CONVS = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)
#: The transposed convolutions that decompose takes, with method ``"tucker"``
#: only (into a `TuckerConv2DTranspose`).
TRANSPOSED_CONVS = (keras.layers.Conv2DTranspose, TuckerConv2DTranspose)
_NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclasses.dataclass(frozen=True)
class Decomposition:
    """What `decompose` made of one layer: the new layer and how it was chosen.

    Attributes:
        layer: the new, built fastconv layer.
        method: the method used (for ``"auto"``, the one it chose).
        rank: the resolved rank: an int, or ``(R_in, R_out)`` for Tucker.
        relative_error: ``||K - K_hat||_F / ||K||_F`` of the kernel, in float64.
        candidates: for ``"auto"``, one dict per method tried (method, rank,
            relative_error, params, macs, or the reason it could not be used);
            empty otherwise.
    """

    layer: BaseFastConv
    method: str
    rank: int | tuple[int, int]
    relative_error: float
    candidates: tuple[dict, ...] = ()


def parse_rank(text: str):
    """Turns a rank written as text (a command-line argument) into a rank value.

    Args:
        text: ``"8"`` (int), ``"0.25"`` (float: fraction of the parameters),
            ``"16,32"`` (Tucker ``(R_in, R_out)``), ``"vbmf"`` or
            ``"energy:0.9"``.

    Returns:
        An int, a float, a pair of ints or the string itself; whether the value
        suits a method and a kernel is checked later, by ``resolve_rank``.

    Raises:
        ValueError: if ``text`` is none of these forms.

    Example:
        >>> parse_rank("8"), parse_rank("0.5"), parse_rank("16,32")
        (8, 0.5, (16, 32))
    """
    if not isinstance(text, str):
        raise TypeError(f"rank must be a str, received rank={text!r}")
    value = text.strip()
    if value == "vbmf":
        return value
    if value.startswith("energy:"):
        fraction = value[len("energy:") :]
        if _NUMBER.fullmatch(fraction) and 0.0 < float(fraction) <= 1.0:
            return f"energy:{fraction}"
    elif re.fullmatch(r"\d+", value):
        return int(value)
    elif re.fullmatch(r"\d+\s*,\s*\d+", value):
        r_in, r_out = (int(part) for part in value.split(","))
        return (r_in, r_out)
    elif _NUMBER.fullmatch(value):
        return float(value)
    raise ValueError(
        "rank must be an int ('8'), a float in (0, 1] ('0.25'), a pair of ints for "
        f"Tucker ('16,32'), 'vbmf' or 'energy:<fraction>', received rank={text!r}"
    )


@dataclasses.dataclass(frozen=True)
class _Source:
    """The parts of a convolution that its replacement must reproduce."""

    name: str
    kernel: np.ndarray  # float64, (*kernel_size, C_in, C_out), 1 to 3 spatial axes
    bias: np.ndarray | None
    kwargs: dict  # BaseFastConv arguments, name excluded


def _type_name(layer) -> str:
    return type(layer).__name__


def _layer_name(layer) -> str:
    return getattr(layer, "name", None) or _type_name(layer)


def _source(layer) -> _Source:
    """Checks ``layer`` and reads its kernel, bias and settings."""
    if not isinstance(layer, keras.layers.Layer):
        raise TypeError(
            "decompose: layer must be a built keras.layers.Conv2D or a linear "
            f"fastconv layer, received an object of type {_type_name(layer)}"
        )
    name = _layer_name(layer)
    if isinstance(layer, _OTHER_CONVS):
        raise TypeError(
            f"decompose: layer {name!r} is a {_type_name(layer)}; only "
            "convolutions (keras.layers.Conv1D, Conv2D, Conv3D and the linear "
            "fastconv layers) can be decomposed"
        )
    if not isinstance(layer, (*KERAS_CONVS, BaseFastConv)):
        raise TypeError(
            f"decompose: layer {name!r} is a {_type_name(layer)}, not a "
            "keras.layers.Conv1D/Conv2D/Conv3D, a keras.layers.Dense or a "
            "fastconv layer"
        )
    if not layer.built:
        raise ValueError(
            f"decompose: layer {name!r} is not built; call it on an input or call "
            "layer.build(input_shape) first, so that its kernel exists"
        )
    if isinstance(layer, BaseFastConv):
        if not layer.is_linear:
            raise ValueError(
                f"decompose: layer {name!r} ({_type_name(layer)}) is not a linear "
                f"map ({layer._nonlinear_reason()}), so it has no kernel to "
                "decompose"
            )
        kernel = layer.dense_kernel()
    else:
        if layer.groups != 1:
            raise ValueError(
                f"decompose: layer {name!r} has groups={layer.groups}; grouped "
                "convolutions are not supported (groups must be 1)"
            )
        if getattr(layer, "quantization_mode", None):
            raise ValueError(
                f"decompose: layer {name!r} is quantized "
                f"(quantization_mode={layer.quantization_mode!r}); decompose the "
                "float layer before quantizing"
            )
        kernel = keras.ops.convert_to_numpy(layer.kernel)
    kernel = np.asarray(kernel, dtype=np.float64)
    if not np.all(np.isfinite(kernel)):
        raise ValueError(
            f"decompose: layer {name!r} has NaN or Inf in its kernel; a kernel "
            "must be finite to be decomposed"
        )
    bias = keras.ops.convert_to_numpy(layer.bias) if layer.use_bias else None
    if bias is not None and not np.all(np.isfinite(bias)):
        raise ValueError(
            f"decompose: layer {name!r} has NaN or Inf in its bias; the new layer "
            "would copy it"
        )
    kwargs = {
        "strides": tuple(layer.strides),
        "padding": layer.padding,
        "data_format": layer.data_format,
        "dilation_rate": tuple(layer.dilation_rate),
        "activation": layer.activation,
        "use_bias": layer.use_bias,
        "kernel_initializer": keras.initializers.serialize(layer.kernel_initializer),
        "bias_initializer": keras.initializers.serialize(layer.bias_initializer),
        "kernel_regularizer": keras.regularizers.serialize(layer.kernel_regularizer),
        "bias_regularizer": keras.regularizers.serialize(layer.bias_regularizer),
        "activity_regularizer": keras.regularizers.serialize(
            layer.activity_regularizer
        ),
        "kernel_constraint": keras.constraints.serialize(layer.kernel_constraint),
        "bias_constraint": keras.constraints.serialize(layer.bias_constraint),
        "dtype": layer.dtype_policy,
        "trainable": layer.trainable,
    }
    return _Source(name, kernel, bias, kwargs)


def _check_method(method, name: str) -> str:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(
            f"decompose: method must be one of {', '.join(map(repr, METHODS))}, "
            f"received method={method!r} for layer {name!r}"
        )
    return method


def _unsupported(method: str, kernel_shape) -> str | None:
    """Why ``method`` cannot take a kernel of this shape, or None."""
    rank = len(kernel_shape) - 2
    if rank != 2 and method not in _LAYERS_ND:
        return (
            f"{method!r} exists for 2-D convolutions only; a {rank}-D one takes "
            f"{' or '.join(map(repr, _LAYERS_ND))}"
        )
    if method in ("cp", "factorized") and all(k == 1 for k in kernel_shape[:-2]):
        return (
            f"a 1x1 kernel has no spatial part for {method!r} to factorise "
            "('tucker' compresses a 1x1 convolution)"
        )
    return None


def _option_names(method: str) -> list[str]:
    """The keyword-only options of a method's decomposition function."""
    return [
        parameter.name
        for parameter in inspect.signature(_DECOMPOSERS[method]).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]


def _check_options(method: str, options: dict, name: str) -> dict:
    accepted = _option_names(method)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) if accepted else "no options"
        raise TypeError(
            f"decompose: method {method!r} takes no option {unknown[0]!r} (layer "
            f"{name!r}); it takes {takes}"
        )
    return options


def _outside_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside
    ``fastconv.convert``."""
    here = os.path.dirname(os.path.abspath(__file__))
    frame, level = inspect.currentframe().f_back, 1
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == here:
        frame, level = frame.f_back, level + 1
    return level


def _resolve(rank, kernel: np.ndarray, method: str, name: str, *, quiet=False):
    """``resolve_rank`` with the layer's name in its errors and warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RankClampedWarning)
        try:
            value = _resolve_rank(rank, kernel, method)
        except ValueError as exc:
            raise ValueError(
                f"decompose: layer {name!r}, method {method!r}: {exc}"
            ) from None
    if not quiet:
        for warning in caught:
            warnings.warn(
                f"decompose: layer {name!r}: {warning.message}",
                warning.category,
                stacklevel=_outside_stacklevel(),
            )
    return value


def _fold(kernel: np.ndarray) -> np.ndarray:
    """A ``(*k, C_in, C_out)`` kernel as ``(prod(k), 1, C_in, C_out)``: the
    4-D kernel the rank rules and Tucker-2 read (they see the spatial axes
    as one, which Tucker-2 leaves whole)."""
    *taps, c_in, c_out = kernel.shape
    return kernel.reshape(math.prod(taps), 1, c_in, c_out)


def _one_nd(source: _Source, method: str, rank, options: dict, new_name, *, quiet):
    """``_one`` for a kernel with 1 or 3 spatial axes (``"cp"``, ``"tucker"``)."""
    kernel = source.kernel
    taps = kernel.shape[:-2]
    folded = _fold(kernel)
    value = _resolve(rank, folded, method, source.name, quiet=quiet)
    try:
        if method == "tucker":
            _check_options(method, options, source.name)
            result = tucker2_decompose(folded, value, **options)
            factors = {
                "pointwise_in": result.pointwise_in,
                "core": result.core.reshape(*taps, *result.core.shape[2:]),
                "pointwise_out": result.pointwise_out,
            }
        else:
            unknown = sorted(set(options) - set(_ND_CP_OPTIONS))
            if unknown:
                raise TypeError(
                    f"decompose: method 'cp' of a {len(taps)}-D convolution takes "
                    f"no option {unknown[0]!r} (layer {source.name!r}); it takes "
                    f"{', '.join(_ND_CP_OPTIONS)}"
                )
            shape = kernel.shape
            value = min(value, math.prod(shape) // max(shape))
            result = cp_axes_decompose(kernel, value, **options)
            factors = result.factors
        layer = _LAYERS_ND[method][len(taps)].from_factors(
            factors, bias=source.bias, name=new_name, **source.kwargs
        )
    except ValueError as exc:
        raise ValueError(
            f"decompose: layer {source.name!r}, method {method!r}: {exc}"
        ) from None
    return Decomposition(layer, method, value, float(result.relative_error))


def _one(source: _Source, method: str, rank, options: dict, new_name: str, *, quiet):
    reason = _unsupported(method, source.kernel.shape)
    if reason is not None:
        raise ValueError(
            f"decompose: layer {source.name!r} cannot use method={method!r}: {reason}"
        )
    if source.kernel.ndim != 4:
        return _one_nd(source, method, rank, options, new_name, quiet=quiet)
    _check_options(method, options, source.name)
    value = _resolve(rank, source.kernel, method, source.name, quiet=quiet)
    try:
        result = _DECOMPOSERS[method](source.kernel, value, **options)
    except ValueError as exc:
        raise ValueError(
            f"decompose: layer {source.name!r}, method {method!r}: {exc}"
        ) from None
    try:
        layer = _LAYERS[method].from_factors(
            result.factors, bias=source.bias, name=new_name, **source.kwargs
        )
    except ValueError as exc:  # factors that overflow the layer's dtype
        raise ValueError(
            f"decompose: layer {source.name!r}, method {method!r}: {exc}"
        ) from None
    return Decomposition(layer, method, value, float(result.relative_error))


def _dense(layer, method, rank, name, options) -> Decomposition:
    """`decompose` for a ``keras.layers.Dense`` or a `LowRankDense`: a truncated
    SVD of its ``(features, units)`` kernel into a `LowRankDense`."""
    layer_name = _layer_name(layer)
    if method in METHODS:
        raise TypeError(
            f"decompose: layer {layer_name!r} is a {_type_name(layer)}, not a "
            f"keras.layers.Conv2D that method {method!r} decomposes; a Dense "
            f"layer takes method {DENSE_METHODS[0]!r}"
        )
    if not isinstance(method, str) or method not in DENSE_METHODS:
        raise ValueError(
            f"decompose: layer {layer_name!r} is a {_type_name(layer)}, whose "
            f"method must be one of {', '.join(map(repr, DENSE_METHODS))}, "
            f"received method={method!r}"
        )
    if options:
        raise TypeError(
            f"decompose: method {method!r} takes no option "
            f"{sorted(options)[0]!r} (layer {layer_name!r}); it takes no options"
        )
    if not layer.built:
        raise ValueError(
            f"decompose: layer {layer_name!r} is not built; call it on an input or "
            "call layer.build(input_shape) first, so that its kernel exists"
        )
    if getattr(layer, "quantization_mode", None):
        raise ValueError(
            f"decompose: layer {layer_name!r} is quantized "
            f"(quantization_mode={layer.quantization_mode!r}); decompose the "
            "float layer before quantizing"
        )
    if rank is None:
        rank = default_rank(method)
    if isinstance(layer, LowRankDense):
        kernel = layer.dense_kernel()
    else:
        kernel = keras.ops.convert_to_numpy(layer.kernel)
    kernel = np.asarray(kernel, dtype=np.float64)
    bias = keras.ops.convert_to_numpy(layer.bias) if layer.use_bias else None
    for label, array in (("kernel", kernel), ("bias", bias)):
        if array is not None and not np.all(np.isfinite(array)):
            raise ValueError(
                f"decompose: layer {layer_name!r} has NaN or Inf in its {label}; "
                "it must be finite to be decomposed"
            )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RankClampedWarning)
        try:
            result = low_rank_decompose(kernel, rank)
        except ValueError as exc:
            raise ValueError(
                f"decompose: layer {layer_name!r}, method {method!r}: {exc}"
            ) from None
    for warning in caught:
        warnings.warn(
            f"decompose: layer {layer_name!r}: {warning.message}",
            warning.category,
            stacklevel=_outside_stacklevel(),
        )
    found = result.kernel_in.shape[1]
    if isinstance(layer, LowRankDense) and found > layer.rank:
        # Its dense kernel has rank layer.rank at most: more would only add
        # zero singular values.
        warnings.warn(
            f"decompose: layer {layer_name!r}: rank={rank!r} gives an svd rank of "
            f"{found}, above the maximum {layer.rank} for a LowRankDense of rank "
            f"{layer.rank}; using {layer.rank}",
            RankClampedWarning,
            stacklevel=_outside_stacklevel(),
        )
        result = low_rank_decompose(kernel, layer.rank)
    try:
        new = LowRankDense.from_factors(
            result.factors,
            bias=bias,
            name=f"{layer_name}_{method}" if name is None else name,
            activation=layer.activation,
            use_bias=layer.use_bias,
            kernel_initializer=keras.initializers.serialize(layer.kernel_initializer),
            bias_initializer=keras.initializers.serialize(layer.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(layer.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(layer.bias_regularizer),
            activity_regularizer=keras.regularizers.serialize(
                layer.activity_regularizer
            ),
            kernel_constraint=keras.constraints.serialize(layer.kernel_constraint),
            bias_constraint=keras.constraints.serialize(layer.bias_constraint),
            dtype=layer.dtype_policy,
            trainable=layer.trainable,
        )
    except ValueError as exc:  # factors that overflow the layer's dtype
        raise ValueError(
            f"decompose: layer {layer_name!r}, method {method!r}: {exc}"
        ) from None
    return Decomposition(new, method, result.rank, float(result.relative_error))


def _transposed(layer, method, rank, name, options) -> Decomposition:
    """`decompose` for a ``keras.layers.Conv2DTranspose`` (or a
    `TuckerConv2DTranspose`): Tucker-2 of its kernel's channel modes into a
    `TuckerConv2DTranspose` with the same arguments."""
    layer_name = _layer_name(layer)
    if method != "tucker":
        raise ValueError(
            f"decompose: layer {layer_name!r} is a {_type_name(layer)}, which only "
            "method 'tucker' decomposes (into a TuckerConv2DTranspose), received "
            f"method={method!r}"
        )
    if not layer.built:
        raise ValueError(
            f"decompose: layer {layer_name!r} is not built; call it on an input or "
            "call layer.build(input_shape) first, so that its kernel exists"
        )
    if getattr(layer, "quantization_mode", None):
        raise ValueError(
            f"decompose: layer {layer_name!r} is quantized "
            f"(quantization_mode={layer.quantization_mode!r}); decompose the "
            "float layer before quantizing"
        )
    if isinstance(layer, TuckerConv2DTranspose):
        kernel = layer.dense_kernel()
    else:
        kernel = keras.ops.convert_to_numpy(layer.kernel)
    # Keras's (k_h, k_w, C_out, C_in) as the (k_h, k_w, C_in, C_out) that the
    # rank rules and Tucker-2 read, so that a pair rank is (R_in, R_out).
    kernel = np.asarray(kernel, dtype=np.float64).transpose(0, 1, 3, 2)
    bias = keras.ops.convert_to_numpy(layer.bias) if layer.use_bias else None
    for label, array in (("kernel", kernel), ("bias", bias)):
        if array is not None and not np.all(np.isfinite(array)):
            raise ValueError(
                f"decompose: layer {layer_name!r} has NaN or Inf in its {label}; "
                "it must be finite to be decomposed"
            )
    if rank is None:
        rank = default_rank(method)
    _check_options(method, options, layer_name)
    value = _resolve(rank, kernel, method, layer_name)
    # TuckerConv2DTranspose takes Conv2DTranspose's arguments (and rank): the
    # original's config gives all but the sizes, which the factors give.
    config = layer.get_config()
    accepted = inspect.signature(TuckerConv2DTranspose.__init__).parameters
    kwargs = {
        key: config[key]
        for key in accepted
        if key in config and key not in ("filters", "kernel_size", "rank")
    }
    try:
        result = tucker2_decompose(kernel, value, **options)
        factors = {
            "pointwise_in": result.pointwise_in,
            "core": result.core.transpose(0, 1, 3, 2),
            "pointwise_out": result.pointwise_out,
        }
        new = TuckerConv2DTranspose.from_factors(
            factors,
            bias=bias,
            name=f"{layer_name}_{method}" if name is None else name,
            dtype=layer.dtype_policy,
            trainable=layer.trainable,
            **kwargs,
        )
    except ValueError as exc:  # a bad option value, or an overflowing factor
        raise ValueError(
            f"decompose: layer {layer_name!r}, method {method!r}: {exc}"
        ) from None
    return Decomposition(new, method, value, float(result.relative_error))


def _input_shape_of(layer, input_shape):
    """The input shape to cost ``auto``'s candidates with, if known."""
    if input_shape is None:
        input_shape = _keras_graph.first_input_shape(layer)
        if input_shape is None:
            return None
    try:
        spatial_shape(input_shape, layer.data_format, len(layer.kernel_size))
    except ValueError:
        return None
    return tuple(input_shape)


def _auto(layer, source: _Source, rank, options, name, max_error, input_shape):
    """Every applicable method, then the cheapest within ``max_error``."""
    every = {key for method in _DECOMPOSERS for key in _option_names(method)}
    unknown = sorted(set(options) - every)
    if unknown:
        raise TypeError(
            f"decompose: no method takes option {unknown[0]!r} (layer "
            f"{source.name!r}); the options are {', '.join(sorted(every))}"
        )
    shape = _input_shape_of(layer, input_shape)
    measure = "macs" if shape is not None else "params"
    decompositions, candidates = [], []
    for method in ("tucker", "cp", "factorized", "separable"):
        reason = _unsupported(method, source.kernel.shape)
        if reason is not None:
            candidates.append({"method": method, "skipped": reason})
            continue
        accepted = _option_names(method)
        if method == "cp" and source.kernel.ndim != 4:
            accepted = _ND_CP_OPTIONS
        method_options = {k: v for k, v in options.items() if k in accepted}
        found = _one(
            source,
            method,
            rank,
            method_options,
            f"{source.name}_{method}" if name is None else name,
            quiet=True,
        )
        if shape is not None:
            cost = found.layer.cost(shape)
            params, macs = cost.params, cost.macs
        else:
            params = sum(int(np.prod(w.shape)) for w in found.layer.weights)
            macs = None
        decompositions.append(found)
        candidates.append(
            {
                "method": method,
                "rank": found.rank,
                "relative_error": found.relative_error,
                "params": params,
                "macs": macs,
            }
        )
    scored = [c for c in candidates if "skipped" not in c]
    within = [c for c in scored if c["relative_error"] <= max_error]
    if within:
        best = min(within, key=lambda c: (c[measure], c["relative_error"]))
    else:
        best = min(scored, key=lambda c: c["relative_error"])
    chosen = next(d for d in decompositions if d.method == best["method"])
    # Repeat the chosen method's rank warnings, if any, now that it is chosen.
    kernel = source.kernel if source.kernel.ndim == 4 else _fold(source.kernel)
    _resolve(rank, kernel, chosen.method, source.name)
    return dataclasses.replace(chosen, candidates=tuple(candidates))


def default_rank(method: str):
    """``method``'s rank when none is given (`DEFAULT_RANKS`).

    >>> default_rank("tucker"), default_rank("cp")
    ('energy:0.9', 0.25)
    """
    if not isinstance(method, str) or method not in DEFAULT_RANKS:
        raise ValueError(
            f"default_rank: method must be one of {METHODS + DENSE_METHODS}, "
            f"received method={method!r}"
        )
    return DEFAULT_RANKS[method]


def _decompose(
    layer,
    method: str = "tucker",
    rank=None,
    *,
    max_error: float = AUTO_MAX_ERROR,
    input_shape=None,
    name: str | None = None,
    **options,
) -> Decomposition:
    """`decompose`, returning the `Decomposition` record (for `convert_model`)."""
    if isinstance(name, str) and not name:
        raise ValueError(
            "decompose: name must be None or a non-empty str, received "
            f"name={name!r} for layer {_layer_name(layer)!r}"
        )
    if isinstance(layer, keras.layers.Dense | LowRankDense):
        return _dense(layer, method, rank, name, options)
    if isinstance(layer, TRANSPOSED_CONVS):
        return _transposed(layer, method, rank, name, options)
    source = _source(layer)
    method = _check_method(method, source.name)
    if rank is None:
        rank = default_rank(method)
    if method == "auto":
        if not (is_number(max_error) and max_error >= 0):
            raise ValueError(
                f"decompose: max_error must be a non-negative float, received "
                f"max_error={max_error!r} for layer {source.name!r}"
            )
        if isinstance(rank, list | tuple):
            raise ValueError(
                "decompose: method 'auto' tries cp, tucker, factorized and "
                "separable at one rank, and a pair of ranks is Tucker-2's alone: "
                f"give an int, a fraction or a rule, or method='tucker', received "
                f"rank={rank!r} for layer {source.name!r}"
            )
        if input_shape is not None and _input_shape_of(layer, input_shape) is None:
            raise ValueError(
                f"decompose: input_shape must be the layer's input shape, (H, W, C) "
                f"or (batch, H, W, C) with known positive sizes, received "
                f"input_shape={input_shape!r} for layer {source.name!r}"
            )
        return _auto(layer, source, rank, options, name, max_error, input_shape)
    return _one(
        source,
        method,
        rank,
        options,
        f"{source.name}_{method}" if name is None else name,
        quiet=False,
    )


def decompose(
    layer,
    method: str = "tucker",
    rank=None,
    *,
    max_error: float | None = None,
    input_shape=None,
    name: str | None = None,
    **options,
) -> BaseFastConv:
    """A new fastconv layer approximating a trained convolution.

    The kernel is read from the layer's (float32) weights, decomposed in float64,
    and the factors are stored in a new, built layer of the method's class. The
    new layer has the original's bias (unchanged), strides, padding, dilation,
    data format, activation (applied once, at the end), initializers,
    regularizers and constraints (these now act on every factor), trainability
    and dtype policy. The original layer is not modified.

    Methods (and the meaning of ``rank`` for each):

    - ``"cp"`` -> `CPConv2D`: the CP rank ``R`` (Lebedev et al. 2015). ALS; not
      exact at any fixed rank in general, exact for a kernel of CP rank ``R``.
    - ``"tucker"`` -> `TuckerConv2D`: ``(R_in, R_out)`` or one int for both
      (Kim et al. 2016). Exact at ``(C_in, C_out)``.
    - ``"factorized"`` -> `FactorizedConv2D`: the intermediate channels ``M`` of
      a ``k_h x 1`` then ``1 x k_w`` pair (Jaderberg et al. 2014). Exact at
      ``min(k_h C_in, k_w C_out)``.
    - ``"separable"`` -> `DepthwiseSeparableConv2D`: the depth multiplier ``D``.
      Exact at ``min(k_h k_w, C_out)``.
    - ``"svd"`` -> `LowRankDense`, for a ``keras.layers.Dense`` (or a
      `LowRankDense`) only, and its only method: the inner width ``R`` of a
      truncated SVD of the ``(features, units)`` kernel, exact at
      ``min(features, units)``. A float rank is a fraction of the
      ``features units`` parameters; ``"energy:..."`` and ``"vbmf"`` read the
      kernel's own spectrum.
    - ``"auto"``: decomposes with each of the four at the same ``rank`` argument
      and keeps the one with the fewest multiply-adds (parameters when the input
      size is unknown) among those whose kernel error is at most ``max_error``;
      if none is, the one with the smallest error.

    ``rank`` follows `fastconv.decomposition.resolve_rank`: an int (Tucker: or a
    pair), a float in ``(0, 1]`` (fraction of the kernel's parameters),
    ``"vbmf"`` or ``"energy:<fraction>"``; ranks above a method's maximum are
    clamped with a `RankClampedWarning` naming the layer.

    A ``keras.layers.Conv2DTranspose`` (or a `TuckerConv2DTranspose`) takes
    ``"tucker"`` only (-> `TuckerConv2DTranspose`, exact at ``(C_in, C_out)``),
    with the same rank forms, read on its kernel as ``(k_h, k_w, C_in,
    C_out)``; its strides, padding and output padding are kept.

    A ``keras.layers.Conv1D`` or ``Conv3D`` (or a 1-D/3-D fastconv layer)
    takes ``"cp"`` (-> `CPConv1D`, `CPConv3D`: TensorLy's ALS over every
    axis; options ``n_iter_max``, ``tol``) and ``"tucker"`` (-> `TuckerConv1D`,
    `TuckerConv3D`, exact at ``(C_in, C_out)``); ``"auto"`` chooses between
    those two. Their rank rules read the kernel with its spatial axes as one
    (a float is a fraction of the parameters counted that way), and a CP rank
    is at most the kernel's entries over its largest axis. A ``Conv1D`` with
    ``padding="causal"`` keeps it: both forms stay causal.

    Args:
        layer: a built ``keras.layers.Conv2D`` (``Conv1D``, ``Conv3D``;
            ``groups=1``), a built fastconv
            layer that is a linear map (e.g. a `TuckerConv2D` to re-decompose
            with smaller ranks, through its ``dense_kernel()``), or a built
            ``keras.layers.Dense`` or `LowRankDense` (method ``"svd"``).
        method: ``"cp"``, ``"tucker"``, ``"factorized"``, ``"separable"`` or
            ``"auto"`` for a convolution; ``"svd"`` for a Dense layer.
        rank: see above; None (the default) for the method's default rank,
            `DEFAULT_RANKS`: ``0.25`` for ``"cp"``, ``"energy:0.9"`` for the
            others.
        max_error: ``"auto"`` only (refused with another method): the kernel
            error bound; default ``AUTO_MAX_ERROR``.
        input_shape: ``"auto"`` only (refused with another method): the
            layer's input shape, to count multiply-adds; default: the shape the
            layer was first called on.
        name: the new layer's name; default ``f"{layer.name}_{method}"``.
        **options: passed to the method's decomposition function:
            ``init``, ``n_iter_max``, ``tol``, ``random_state`` for ``"cp"``;
            ``n_iter_max``, ``tol``, ``random_state`` for ``"tucker"``; none for
            the other two. With ``"auto"``, each method gets the options it takes.

    Returns:
        The new layer, built, with the decomposed factors as its weights.

    Raises:
        TypeError: ``layer`` is not a 2-D convolution (the message names its
            type, e.g. ``Conv1D``), or an option the method does not take.
        ValueError: naming the layer and the argument: an unknown method, a
            rank that does not parse, an unbuilt layer, ``groups > 1``, a 1x1
            kernel with ``"cp"``/``"factorized"``, a non-finite kernel, a
            non-linear fastconv layer.

    Example:
        >>> import keras, fastconv
        >>> conv = keras.layers.Conv2D(16, 3, activation="relu")
        >>> conv.build((None, 8, 8, 8))
        >>> fast = fastconv.decompose(conv, "factorized", rank=24)
        >>> type(fast).__name__, fast.intermediate_filters
        ('FactorizedConv2D', 24)
    """
    unused = {"max_error": max_error, "input_shape": input_shape}
    for argument, value in unused.items():
        if (
            value is not None
            and method in (*METHODS, *DENSE_METHODS)
            and (method != "auto")
        ):
            raise ValueError(
                f"decompose: {argument} applies only to method='auto', received "
                f"{argument}={value!r} with method={method!r} for layer "
                f"{_layer_name(layer)!r}"
            )
    return _decompose(
        layer,
        method,
        rank,
        max_error=AUTO_MAX_ERROR if max_error is None else max_error,
        input_shape=input_shape,
        name=name,
        **options,
    ).layer
