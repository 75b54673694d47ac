"""Which implementation a layer runs: the static rule and the autotune request.

``static_implementation`` is what ``implementation="auto"`` runs when it does
not measure; ``resolve_implementation`` turns one layer call into an
``autotune.Request`` and returns the choice, memoised per shape and mode;
``expand_by_conv`` says when an expanding 1x1 runs as a convolution instead
of a matrix product (``kernels.conv.pointwise_product``). The layer is
passed duck-typed, as ``autotune.Request`` takes it: this module imports no
layer.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence

import keras

from fastconv.kernels import autotune
from fastconv.kernels.conv import tf_cpu_only

__all__ = [
    "CONFIG_UNTIMED",
    "DENSE_BELOW_RATIO",
    "DENSE_TINY_MACS",
    "expand_by_conv",
    "resolve_implementation",
    "static_implementation",
]

#: The static rule picks the dense kernel below this FLOP ratio to Conv2D.
DENSE_BELOW_RATIO = 1.2
#: ... and, for inference on eager PyTorch, when the equivalent Conv2D would do
#: fewer multiply-adds than this (the time is then per-op overhead).
DENSE_TINY_MACS = 5_000_000
#: Configuration entries that do not change how long the linear part takes.
CONFIG_UNTIMED = frozenset(
    {
        "name",
        "trainable",
        "dtype",
        "implementation",
        "activation",
        "kernel_initializer",
        "bias_initializer",
        "kernel_regularizer",
        "bias_regularizer",
        "activity_regularizer",
        "kernel_constraint",
        "bias_constraint",
    }
)


def static_implementation(
    candidates: Sequence[str],
    rule: Mapping[str, str],
    *,
    flop_ratio: float,
    dense_macs: float,
    compilation: str = "eager",
    training: bool = False,
) -> str:
    """The static rule: what ``"auto"`` runs when it does not measure.

    The reconstructed dense kernel when the layer saves less than
    ``1 / DENSE_BELOW_RATIO`` of a ``Conv2D``'s multiply-adds (running
    several small ops costs more than the saving), or, for inference on
    eager PyTorch, when even that ``Conv2D`` would do fewer than
    ``DENSE_TINY_MACS`` (the time is then per-op overhead, and one
    convolution with a cached kernel has the least); else the ``rule`` entry
    for ``"xla"`` when the code is compiled by XLA (``compilation``, see
    ``fastconv.kernels.autotune.compilation_mode``), or for the Keras
    backend's name otherwise; else the first of ``candidates``. A layer's
    rule names the implementations measured fastest at most points of
    ``benchmarks/layers.py`` (docs/performance.md).

    Args:
        candidates: the implementations the layer can run, its static default
            first.
        rule: the layer class's ``STATIC_RULE``.
        flop_ratio: multiply-adds of the equivalent ``Conv2D`` over the
            layer's (inf if unknown).
        dense_macs: multiply-adds of that ``Conv2D`` on the whole batch (inf
            if unknown).
        compilation: ``"eager"``, ``"graph"`` or ``"xla"``.
        training: whether the call is a training step.
    """
    if "dense" in candidates and flop_ratio < DENSE_BELOW_RATIO:
        return "dense"
    if (
        "dense" in candidates
        and not training
        and compilation == "eager"
        and keras.backend.backend() == "torch"
        and dense_macs < DENSE_TINY_MACS
    ):
        return "dense"
    key = "xla" if compilation == "xla" else keras.backend.backend()
    choice = rule.get(key, candidates[0])
    return choice if choice in candidates else candidates[0]


def resolve_implementation(
    layer, inputs, training, memo: MutableMapping[tuple, str]
) -> str:
    """The concrete implementation ``layer`` runs on ``inputs``.

    Its ``implementation`` unless that is ``"auto"``; then ``autotune.choose``
    on a request built from the call, remembered in ``memo`` per (shape,
    training, compilation) once the shape is fully known.

    Args:
        layer: a fastconv layer: its ``implementation``, ``cost``,
            ``get_config``, ``allowed_implementations`` and
            ``static_implementation`` are used.
        inputs: the call's input tensor.
        training: the call's training flag.
        memo: the layer's memo of earlier choices (updated).
    """
    if layer.implementation != "auto":
        return layer.implementation
    # A symbolic size (the batch of a JAX export, which traces with shape
    # polymorphism) is unknown here, as None is.
    shape = tuple(d if isinstance(d, int) else None for d in inputs.shape)
    compilation = autotune.compilation_mode(inputs)
    memo_key = (shape, bool(training), compilation)
    if memo_key in memo:
        return memo[memo_key]
    static = layer.static_implementation(shape, compilation, bool(training))
    known = None not in shape
    macs = shape[0] * layer.cost(shape[1:]).macs if known else 0
    config = {k: v for k, v in layer.get_config().items() if k not in CONFIG_UNTIMED}
    request = autotune.Request(
        layer=layer,
        input_shape=shape,
        dtype=keras.backend.standardize_dtype(inputs.dtype),
        training=bool(training),
        candidates=layer.allowed_implementations(),
        static=static,
        macs=macs,
        compilation=compilation,
        config=config,
    )
    choice = autotune.choose(request)
    if known:
        memo[memo_key] = choice
    return choice


def expand_by_conv(inputs, training, data_format) -> bool:
    """Whether expanding 1x1s run as convolutions for this call: in
    inference on TensorFlow's CPU without XLA, channels last (see
    ``kernels.conv.pointwise_product``)."""
    return (
        not training
        and keras.backend.backend() == "tensorflow"
        and tf_cpu_only()
        and data_format == "channels_last"
        and autotune.compilation_mode(inputs) == "graph"
    )
