"""Folding batch normalization into the convolution before it: `fold_batchnorm`.

In inference, ``BatchNormalization`` is an affine map per channel,
``y = gamma * (x - mean) / sqrt(variance + epsilon) + beta``. When ``x`` is the
output of a convolution with no activation, the map folds into the
convolution's last linear stage: its output channels are scaled by
``scale = gamma / sqrt(variance + epsilon)`` and its bias becomes
``beta + (bias - mean) * scale``. The folded model computes the same outputs
with one pass over memory fewer per pair.

The model is walked with `fastconv._keras_graph` (nested models included) and
copied with the cloning of `fastconv.convert.convert_model`: each folded
convolution is replaced by a copy with the folded weights, each folded
``BatchNormalization`` by a `FoldedBatchNormalization` (its input unchanged)
of the same name, and
every other layer is re-created from its config with a copy of its weights.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import NamedTuple

import keras
import numpy as np

from fastconv import _keras_graph
from fastconv.convert.convert_model import _clone
from fastconv.layers import (
    BaseFastConv,
    BottleneckConv2D,
    CPConv2D,
    DepthwiseSeparableConv2D,
    FactorizedConv2D,
    StackedConv2D,
    TuckerConv2D,
    WideConv2D,
)

__all__ = ["FoldReport", "FoldResult", "FoldedBatchNormalization", "fold_batchnorm"]

#: The weight of each fastconv layer whose last axis is the layer's output
#: channels, and after which only the bias (and the activation) come.
_LAST_STAGE = {
    CPConv2D: lambda layer: layer.pointwise_out,
    TuckerConv2D: lambda layer: layer.pointwise_out,
    DepthwiseSeparableConv2D: lambda layer: layer.pointwise,
    FactorizedConv2D: lambda layer: layer.horizontal,
    StackedConv2D: lambda layer: getattr(layer, f"stack_{layer.depth - 1}"),
    BottleneckConv2D: lambda layer: layer.expand,
    WideConv2D: lambda layer: layer.kernel,
}

_KERAS_CONVS = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
)

_ACTIVATIONS = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.PReLU,
    keras.layers.Softmax,
)


@keras.saving.register_keras_serializable(package="fastconv")
class FoldedBatchNormalization(keras.layers.Identity):
    """What a folded ``BatchNormalization`` becomes: its input, unchanged.

    It stands where the ``BatchNormalization`` stood, with its name, so that the
    graph and every layer name stay as they were; it takes the same call
    arguments (``training``, ``mask``) and ignores them.
    """

    def call(self, inputs, training=None, mask=None):
        return super().call(inputs)

    def compute_output_spec(self, inputs, training=None, mask=None):
        return super().compute_output_spec(inputs)


@dataclasses.dataclass
class FoldReport:
    """What `fold_batchnorm` folded and what it left alone.

    Attributes:
        folded: ``(convolution, batch normalization)`` name pairs, in graph
            order; a layer inside a nested model is named ``model/layer``.
        kept: ``(batch normalization, reason)`` for every
            ``BatchNormalization`` left in the model, e.g. ``("bn2", "follows
            an activation (ReLU 're_lu')")``.
    """

    folded: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    kept: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        """The report as plain JSON-ready values."""
        return {
            "folded": [{"conv": c, "batchnorm": b} for c, b in self.folded],
            "kept": [{"batchnorm": b, "reason": r} for b, r in self.kept],
        }

    def __str__(self) -> str:
        lines = [
            f"fastconv.fold_batchnorm: {len(self.folded)} BatchNormalization "
            f"folded, {len(self.kept)} left"
        ]
        lines += [f"  folded {bn} into {conv}" for conv, bn in self.folded]
        lines += [f"  left {bn}: {reason}" for bn, reason in self.kept]
        return "\n".join(lines)


class FoldResult(NamedTuple):
    """What `fold_batchnorm` returns; ``new_model, report = result`` works.

    Attributes:
        model: the new Keras model.
        report: the `FoldReport`.
    """

    model: keras.Model
    report: FoldReport


def _check_model(model):
    """The functional graph of ``model``, or a clear error naming it."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            "fold_batchnorm: model must be a keras.Model (Functional or "
            f"Sequential), received an object of type {type(model).__name__}"
        )
    if isinstance(model, keras.Sequential) and not model.built:
        raise ValueError(
            f"fold_batchnorm: model {model.name!r} is not built; give the "
            "Sequential model a keras.Input first or call model.build(input_shape)"
        )
    function = _keras_graph.graph(model)
    if function is None:
        raise ValueError(
            f"fold_batchnorm: model {model.name!r} is a subclassed keras.Model "
            f"({type(model).__name__}) whose graph cannot be copied; fold its "
            "layers in your model's code instead"
        )
    return function


def _graphs(function, path, found: list) -> None:
    """Appends ``(graph, path)`` for ``function`` and every nested model, once
    each (a nested model called twice is one graph whose layers it shares)."""
    if any(function is seen for seen, _ in found):
        return
    found.append((function, path))
    for node in _keras_graph.operation_nodes(function):
        inner = _keras_graph.graph(node.operation)
        if inner is not None:
            _graphs(inner, (*path, node.operation.name), found)


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _describe(layer) -> str:
    kind = type(layer).__name__
    return f"{_article(kind)} {kind} {layer.name!r}"


def _last_stage(layer):
    """The weight whose last axis is ``layer``'s output channels, or None."""
    if isinstance(layer, keras.layers.SeparableConv2D):
        return layer.pointwise_kernel
    if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D):
        return layer.kernel
    for cls, last in _LAST_STAGE.items():
        if isinstance(layer, cls):
            return last(layer)
    return None


def _conv_reason(conv, calls: int, consumers: int, bn) -> str | None:
    """Why ``bn`` cannot fold into ``conv``, the layer before it, or None."""
    if not isinstance(conv, _KERAS_CONVS + (BaseFastConv,)):
        if isinstance(conv, _ACTIVATIONS):
            return f"follows an activation ({type(conv).__name__} {conv.name!r})"
        return f"follows {_describe(conv)}"
    if conv.activation not in (None, keras.activations.linear):
        name = keras.activations.serialize(conv.activation)
        return f"follows an activation (activation={name!r} of {conv.name!r})"
    if calls > 1:
        return f"previous layer {conv.name!r} is shared (called {calls} times)"
    if consumers > 1:
        return f"previous layer {conv.name!r} has other consumers"
    channel_axis = -1 if conv.data_format == "channels_last" else 1
    if bn.axis % 4 != channel_axis % 4:
        return (
            f"axis is not the channel axis (axis={bn.axis}, {conv.name!r} is "
            f"{conv.data_format})"
        )
    if getattr(conv, "quantization_mode", None):
        return f"previous layer {conv.name!r} is quantized"
    if getattr(conv, "residual", False):
        return (
            f"previous layer {conv.name!r} adds its input after its last linear "
            "stage (residual=True)"
        )
    if _last_stage(conv) is None:
        return f"previous layer {conv.name!r} has no known last linear stage"
    return None


def _bn_reason(bn, node, calls: int) -> str | None:
    """Why ``bn`` cannot fold whatever precedes it, or None."""
    if calls > 1:
        return f"the BatchNormalization is shared (called {calls} times)"
    if node.arguments.kwargs.get("training") is True:
        return "training-mode only (called with training=True)"
    if getattr(bn, "renorm", False):
        return "renorm=True"
    return None


def _find_pairs(graphs) -> tuple[list, FoldReport]:
    """``[(conv, bn, conv input shape, folded values)]`` to fold, and the
    report."""
    calls = collections.Counter(
        id(node.operation)
        for function, _ in graphs
        for node in _keras_graph.operation_nodes(function)
    )
    pairs, report = [], FoldReport()
    for function, path in graphs:
        nodes = _keras_graph.operation_nodes(function)
        producers = {id(x): node for node in nodes for x in node.outputs}
        consumers = collections.Counter(
            id(x) for node in nodes for x in node.input_tensors
        )
        consumers.update(id(x) for x in function.outputs)
        for node in nodes:
            bn = node.operation
            if not isinstance(bn, keras.layers.BatchNormalization):
                continue
            bn_name = "/".join((*path, bn.name))
            reason = _bn_reason(bn, node, calls[id(bn)])
            source = producers.get(id(node.input_tensors[0]))
            if reason is None and source is None:
                reason = "follows a model input"
            if reason is None and _keras_graph.graph(source.operation) is not None:
                reason = f"follows a nested model {source.operation.name!r}"
            if reason is None:
                conv = source.operation
                reason = _conv_reason(
                    conv,
                    calls[id(conv)],
                    consumers[id(node.input_tensors[0])],
                    bn,
                )
            if reason is None:
                values, reason = _folded_values(conv, bn)
            if reason is not None:
                report.kept.append((bn_name, reason))
                continue
            shape = tuple(source.input_tensors[0].shape)
            pairs.append((conv, bn, shape, values))
            report.folded.append(("/".join((*path, conv.name)), bn_name))
    return pairs, report


def _value(variable) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable), dtype="float64")


def _statistics_reason(bn) -> str | None:
    """Why ``bn``'s statistics cannot fold into finite weights, or None."""
    for label in ("moving_mean", "moving_variance", "gamma", "beta"):
        variable = getattr(bn, label, None)
        if variable is not None and not np.all(np.isfinite(_value(variable))):
            return f"its {label} holds NaN or Inf"
    variance = _value(bn.moving_variance)
    if np.any(variance < 0):
        return f"its moving_variance has a negative entry ({variance.min():.3g})"
    if np.any(variance + bn.epsilon <= 0):
        return "its moving_variance + epsilon is not positive"
    return None


def _folded_values(conv, bn) -> tuple[tuple | None, str | None]:
    """``((weights by name, bias), None)`` of ``conv`` with ``bn``'s inference
    map folded in, or ``(None, reason)`` where they would not be finite."""
    reason = _statistics_reason(bn)
    if reason is not None:
        return None, reason
    c_out = int(_last_stage(conv).shape[-1])
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        c_out *= int(_last_stage(conv).shape[-2])
    mean, variance = _value(bn.moving_mean), _value(bn.moving_variance)
    gamma = _value(bn.gamma) if bn.scale else np.ones_like(mean)
    beta = _value(bn.beta) if bn.center else np.zeros_like(mean)
    if mean.shape != (c_out,):
        raise ValueError(
            f"fold_batchnorm: {bn.name!r} normalizes {mean.shape[0]} channels and "
            f"{conv.name!r} has {c_out}"
        )
    scale = gamma / np.sqrt(variance + bn.epsilon)
    bias = _value(conv.bias) if conv.use_bias else np.zeros(c_out)
    folded_bias = beta + (bias - mean) * scale

    old = {variable.name: _value(variable) for variable in conv.weights}
    last = _last_stage(conv).name
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        # (k_h, k_w, C_in, multiplier): output channel c * multiplier + m.
        old[last] = old[last] * scale.reshape(old[last].shape[-2:])
    else:
        old[last] = old[last] * scale
    with np.errstate(over="ignore", invalid="ignore"):
        arrays = [a.astype(np.float32) for a in (*old.values(), folded_bias)]
    if not all(np.all(np.isfinite(a)) for a in arrays):
        return None, "the folded weights would not be finite in float32"
    return (old, folded_bias), None


def _folded_layer(conv, input_shape, values):
    """A copy of ``conv`` with a bias, holding the folded ``values``."""
    old, folded_bias = values
    new = type(conv).from_config({**conv.get_config(), "use_bias": True})
    new.build(input_shape)
    for variable in new.weights:
        value = folded_bias if variable is new.bias else old[variable.name]
        variable.assign(value.astype(variable.dtype))
    return new


def fold_batchnorm(model) -> FoldResult:
    """A copy of a model with its batch normalizations folded into the
    convolutions before them, for inference.

    A ``BatchNormalization`` folds when the layer before it is a
    ``keras.layers.Conv2D``, ``DepthwiseConv2D`` or ``SeparableConv2D`` or a
    fastconv layer (`CPConv2D`, `TuckerConv2D`, ...), with no activation of its
    own, called once, whose output only that ``BatchNormalization`` reads, and
    the ``BatchNormalization`` normalizes its channel axis with its moving
    statistics. The convolution's last linear stage (the kernel, the pointwise
    kernel, a fastconv layer's last factor) is scaled per output channel by
    ``gamma / sqrt(moving_variance + epsilon)`` and its bias (added when it had
    none) becomes ``beta + (bias - moving_mean) * scale``. Every other
    ``BatchNormalization`` is left alone, with the reason in the report.

    The model itself is never modified. In the copy, every layer keeps its
    name; a folded convolution has the folded weights and ``use_bias=True``, a
    folded ``BatchNormalization`` becomes a `FoldedBatchNormalization` of the
    same name, which passes its input through (the graph keeps its shape and
    the copy saves and loads with no ``custom_objects``), and every
    other layer is re-created from its config with a copy of its weights. The
    copy computes the original's inference outputs up to rounding; training
    it further no longer normalizes the folded channels.

    Args:
        model: a built Functional or Sequential ``keras.Model``; nested models
            are folded inside.

    Returns:
        A `FoldResult`: ``.model``, the new model, and ``.report``, a
        `FoldReport` with the folded ``(conv, batchnorm)`` pairs and every
        ``BatchNormalization`` left with its reason (``print(report)`` lists
        them). It unpacks: ``new_model, report = fold_batchnorm(model)``.

    Raises:
        TypeError: ``model`` is not a keras.Model.
        ValueError: an unbuilt Sequential or a subclassed model, or a layer
            that cannot be re-created from its config.

    Example:
        >>> import keras, fastconv
        >>> model = keras.Sequential([
        ...     keras.Input((8, 8, 3)),
        ...     keras.layers.Conv2D(4, 3, name="conv"),
        ...     keras.layers.BatchNormalization(name="bn"),
        ...     keras.layers.ReLU(name="relu"),
        ...     keras.layers.BatchNormalization(name="bn_after_relu"),
        ... ])
        >>> folded, report = fastconv.fold_batchnorm(model)
        >>> report.folded
        [('conv', 'bn')]
        >>> report.kept
        [('bn_after_relu', "follows an activation (ReLU 'relu')")]
    """
    graphs = []
    _graphs(_check_model(model), (), graphs)
    pairs, report = _find_pairs(graphs)
    replacements = {}
    for conv, bn, shape, values in pairs:
        replacements[id(conv)] = _folded_layer(conv, shape, values)
        replacements[id(bn)] = FoldedBatchNormalization(
            name=bn.name, dtype=bn.dtype_policy.name
        )
    return FoldResult(_clone(model, replacements), report)
