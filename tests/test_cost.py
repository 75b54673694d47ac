import keras
import numpy as np
import pytest

from fastconv.cost import (
    Cost,
    conv2d_cost,
    conv_output_length,
    depthwise_conv2d_cost,
    layer_cost,
    spatial_dims,
)


def _count(layer):
    return sum(int(np.prod(v.shape)) for v in layer.weights)


def test_the_famous_formula():
    # C_out * H_out * W_out * k_h * k_w * C_in multiply-adds
    cost = conv2d_cost((28, 28, 32), 64, 3)
    assert cost.macs == 64 * 26 * 26 * 3 * 3 * 32
    assert cost.params == 3 * 3 * 32 * 64 + 64
    assert cost.flops == 2 * cost.macs


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("stride, dilation", [(1, 1), (2, 1), (1, 2), (3, 1)])
def test_output_length_matches_keras(padding, stride, dilation):
    layer = keras.layers.Conv2D(
        2, (5, 3), strides=stride, dilation_rate=dilation, padding=padding
    )
    shape = layer.compute_output_shape((1, 17, 12, 3))
    assert conv_output_length(17, 5, stride, padding, dilation) == shape[1]
    assert conv_output_length(12, 3, stride, padding, dilation) == shape[2]


def test_layer_cost_counts_keras_layers_like_their_weights():
    conv = keras.layers.Conv2D(8, 3, groups=2)
    conv.build((None, 10, 10, 4))
    assert layer_cost(conv, (None, 10, 10, 4)) == Cost(_count(conv), 8 * 8 * 8 * 9 * 2)
    dw = keras.layers.DepthwiseConv2D(3, depth_multiplier=2)
    dw.build((None, 10, 10, 4))
    assert layer_cost(dw, (None, 10, 10, 4)) == Cost(_count(dw), 8 * 8 * 8 * 9)
    sep = keras.layers.SeparableConv2D(5, 3)
    sep.build((None, 10, 10, 4))
    assert layer_cost(sep, (None, 10, 10, 4)) == Cost(
        _count(sep), 8 * 8 * 4 * 9 + 8 * 8 * 4 * 5
    )
    dense = keras.layers.Dense(10)
    dense.build((None, 784))
    assert layer_cost(dense, (None, 784)) == Cost(7850, 7840)
    pool = keras.layers.MaxPooling2D()
    assert layer_cost(pool, (None, 10, 10, 4)) == Cost(0, 0)


def test_depthwise_cost_and_channels_first():
    cost = depthwise_conv2d_cost((3, 8, 8), 3, 2, data_format="channels_first")
    assert cost == Cost(3 * 3 * 3 * 2, 6 * 6 * 6 * 9)
    assert spatial_dims((None, 3, 8, 9), "channels_first") == (8, 9, 3)


@pytest.mark.parametrize("shape", [(8, 8), (1, 2, 3, 4, 5), (None, None, 8, 3)])
def test_bad_shapes(shape):
    with pytest.raises(ValueError, match="input_shape"):
        conv2d_cost(shape, 4, 3)
