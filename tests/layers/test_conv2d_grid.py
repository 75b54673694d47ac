"""Keras's own ``Conv2D`` test grid, applied to every fastconv layer.

The grid's values: kernel_size (4, 3) (and 5, the smallest that
``StackedConv2D`` takes), strides (2, 1), dilation_rate (2, 3), both
paddings, both data formats, with and without bias. Each layer either
computes what a ``keras.layers.Conv2D`` with its ``dense_kernel()`` and bias
computes, or refuses the configuration with a ``ValueError`` naming the
argument. Not the full product: ``GRID`` covers every value and the pairs
that interact (strides or dilation with padding and data format), so that the
file stays quick on every backend.
"""

import keras
import numpy as np
import pytest

import fastconv
from tests.layer_checks import random_input, reference_conv2d_output, to_numpy

pytestmark = pytest.mark.layers

ATOL = 1e-4
FILTERS = 6
BATCH, HEIGHT, WIDTH, CHANNELS = 2, 11, 14, 4

LAYERS = {
    fastconv.BottleneckConv2D: dict(bottleneck_filters=3),
    fastconv.CPConv2D: dict(rank=3),
    fastconv.DepthwiseSeparableConv2D: dict(depth_multiplier=2),
    fastconv.FactorizedConv2D: dict(intermediate_filters=3),
    fastconv.StackedConv2D: dict(intermediate_filters=3),
    fastconv.TuckerConv2D: dict(rank=(3, 4)),
    fastconv.WideConv2D: dict(merged_layers=2),
}

LAST, FIRST = "channels_last", "channels_first"
GRID = [
    dict(kernel_size=(4, 3), padding="valid", data_format=LAST, use_bias=True),
    dict(kernel_size=(4, 3), strides=(2, 1), padding="valid", data_format=LAST),
    dict(
        kernel_size=(4, 3),
        strides=(2, 1),
        padding="same",
        data_format=FIRST,
        use_bias=False,
    ),
    dict(
        kernel_size=(4, 3),
        dilation_rate=(2, 3),
        padding="same",
        data_format=LAST,
        use_bias=False,
    ),
    dict(kernel_size=(4, 3), dilation_rate=(2, 3), padding="valid", data_format=FIRST),
    dict(kernel_size=5, strides=(2, 1), padding="same", data_format=LAST),
    dict(
        kernel_size=5,
        dilation_rate=(2, 3),
        padding="valid",
        data_format=FIRST,
        use_bias=False,
    ),
    dict(kernel_size=5, padding="same", data_format=FIRST),
    dict(kernel_size=(4, 3), strides=(2, 1), dilation_rate=(2, 3), padding="valid"),
]


def _config_id(config):
    return "-".join(f"{key}={value}" for key, value in config.items()).replace(" ", "")


def _refusal(cls, config):
    """The parts of the message a layer must refuse ``config`` with, or None."""
    strides, dilation = config.get("strides", 1), config.get("dilation_rate", 1)
    if strides != 1 and dilation != 1:
        return (
            "strides > 1 cannot be combined with dilation_rate > 1, received "
            f"strides={strides!r} and dilation_rate={dilation!r}",
        )
    if cls is fastconv.StackedConv2D and config["kernel_size"] != 5:
        return (
            "kernel_size must be square, odd and at least 5",
            f"received kernel_size={config['kernel_size']!r}",
        )
    return None


def _input(data_format):
    if data_format == LAST:
        return random_input((BATCH, HEIGHT, WIDTH, CHANNELS))
    return random_input((BATCH, CHANNELS, HEIGHT, WIDTH))


@pytest.mark.parametrize("config", GRID, ids=[_config_id(c) for c in GRID])
@pytest.mark.parametrize("cls", LAYERS, ids=[cls.__name__ for cls in LAYERS])
def test_matches_conv2d_or_refuses(cls, config):
    kwargs = {**LAYERS[cls], **config, "bias_initializer": "random_normal"}
    refusal = _refusal(cls, config)
    if refusal is not None:
        with pytest.raises(ValueError) as info:
            cls(FILTERS, **kwargs)
        assert str(info.value).startswith(f"{cls.__name__}: ")
        assert all(part in str(info.value) for part in refusal)
        return
    layer = cls(FILTERS, **kwargs)
    assert layer.implementation == "auto"
    x = _input(layer.data_format)
    y = to_numpy(layer(x))
    assert layer.is_linear
    y_ref = reference_conv2d_output(layer, x)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, atol=ATOL, rtol=ATOL)


NONLINEAR = [
    (
        fastconv.BottleneckConv2D,
        dict(bottleneck_filters=3, intermediate_activation="relu"),
        "intermediate_activation='relu' acts between the factors",
    ),
    (
        fastconv.DepthwiseSeparableConv2D,
        dict(intermediate_batchnorm=True),
        "intermediate_batchnorm=True",
    ),
    (
        fastconv.StackedConv2D,
        dict(intermediate_activation="relu"),
        "intermediate_activation='relu' acts between its 3x3 convolutions",
    ),
]


@pytest.mark.parametrize(
    "cls, kwargs, reason", NONLINEAR, ids=[cls.__name__ for cls, _, _ in NONLINEAR]
)
def test_nonlinear_layers_have_no_dense_kernel(cls, kwargs, reason):
    config = dict(kernel_size=5, strides=(2, 1), padding="same", data_format=FIRST)
    layer = cls(FILTERS, **kwargs, **config)
    x = _input(FIRST)
    y = to_numpy(layer(x))
    conv = keras.layers.Conv2D(FILTERS, **config)
    assert y.shape == tuple(conv.compute_output_shape(x.shape))
    assert not layer.is_linear
    with pytest.raises(ValueError, match="dense_kernel") as info:
        layer.dense_kernel()
    assert reason in str(info.value)
    pytest.skip(f"not compared with Conv2D: {reason}")
