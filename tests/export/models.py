"""One tiny model holding every fastconv layer once per implementation, side by
side on one 8x8x4 input; the export tests share it."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import fastconv

#: One small configuration per layer: 4 input channels to 4 output channels.
LAYERS = {
    fastconv.BottleneckConv2D: dict(kernel_size=3, bottleneck_filters=2),
    fastconv.CPConv2D: dict(kernel_size=3, rank=2),
    fastconv.DepthwiseSeparableConv2D: dict(kernel_size=3),
    fastconv.FactorizedConv2D: dict(kernel_size=3, intermediate_filters=2),
    fastconv.StackedConv2D: dict(kernel_size=5, intermediate_filters=2),
    fastconv.TuckerConv2D: dict(kernel_size=3, rank=2),
    fastconv.WideConv2D: dict(kernel_size=3, merged_layers=2),
}
FILTERS = 4
SIZE = 8


def cases() -> list[tuple[type, str]]:
    """(layer class, implementation): ``"auto"`` and every one it can run."""
    return [
        (cls, implementation)
        for cls, kwargs in LAYERS.items()
        for implementation in (
            "auto",
            *cls(FILTERS, **kwargs).allowed_implementations(),
        )
    ]


CASES = cases()
CASE_IDS = [f"{cls.__name__}-{implementation}" for cls, implementation in CASES]


def input_shape(data_format: str) -> tuple[int, int, int]:
    if data_format == "channels_first":
        return (FILTERS, SIZE, SIZE)
    return (SIZE, SIZE, FILTERS)


def every_layer_model(data_format: str, cases=CASES) -> keras.Model:
    """Each of ``cases``' layers on one input, their outputs joined on the
    channel axis: the ``i``-th case owns channels ``4 i`` to ``4 i + 3``."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(input_shape(data_format))
    outputs = [
        cls(
            FILTERS,
            padding="same",
            data_format=data_format,
            implementation=implementation,
            bias_initializer="random_normal",
            **LAYERS[cls],
        )(inputs)
        for cls, implementation in cases
    ]
    if len(outputs) == 1:
        return keras.Model(inputs, outputs[0])
    axis = 1 if data_format == "channels_first" else -1
    return keras.Model(inputs, keras.layers.Concatenate(axis=axis)(outputs))


def case_slice(output: np.ndarray, index: int, data_format: str) -> np.ndarray:
    channels = slice(FILTERS * index, FILTERS * (index + 1))
    if data_format == "channels_first":
        return output[:, channels]
    return output[..., channels]


def skip_unrunnable(data_format: str) -> None:
    """TensorFlow's CPU kernels have no channels-first convolution."""
    if data_format == "channels_first" and keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow's CPU convolutions cannot run channels_first")


def batch(data_format: str, size: int = 2) -> np.ndarray:
    shape = (size, *input_shape(data_format))
    return np.random.default_rng(1).standard_normal(shape).astype("float32")
