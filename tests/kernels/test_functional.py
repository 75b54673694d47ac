"""Each implementation function equals keras.ops.conv with its dense kernel."""

import keras
import numpy as np
import pytest

from fastconv.kernels import conv, functional, policy
from fastconv.kernels.dense_cache import DenseKernelCache
from tests.layer_checks import RTOL, random_input, relative_error, to_numpy

C_IN, C_OUT, K = 3, 5, 3


def _factors(family):
    """(factors, dense kernel builder, extra keywords) of a small layer."""
    r = 2
    shapes = {
        "cp": [(C_IN, r), (K, r), (K, r), (r, C_OUT)],
        "tucker": [(C_IN, r), (K, K, r, 4), (4, C_OUT)],
        "bottleneck": [(C_IN, r), (K, K, r, r), (r, C_OUT)],
        "separable": [(K, K, C_IN, 2), (2 * C_IN, C_OUT)],
        "factorized": [(K, 1, C_IN, 4), (1, K, 4, C_OUT)],
    }[family]
    return [random_input(s, seed=10 + i) for i, s in enumerate(shapes)]


IMPLEMENTATIONS = [
    ("cp", "depthwise"),
    ("cp", "matmul"),
    ("cp", "shift"),
    ("cp", "fused"),
    ("tucker", "plain"),
    ("tucker", "matmul"),
    ("bottleneck", "plain"),
    ("bottleneck", "matmul"),
    ("separable", "plain"),
    ("separable", "matmul"),
    ("separable", "shift"),
    ("factorized", "plain"),
    ("factorized", "direct"),
    ("factorized", "shift"),
    ("factorized", "unfold"),
]
FUSED_BIAS = (
    {("cp", "matmul"), ("cp", "shift"), ("cp", "fused")}
    | {(f, "matmul") for f in ("tucker", "bottleneck", "separable")}
    | {("separable", "shift")}
)


def _reference(x, kernel, strides, padding, dilation, data_format):
    """keras.ops.conv, run channels_last (all TF CPU kernels take it)."""
    if data_format == "channels_first":
        x = np.transpose(x, (0, 2, 3, 1))
    y = to_numpy(keras.ops.conv(x, kernel, strides, padding, "channels_last", dilation))
    return np.transpose(y, (0, 3, 1, 2)) if data_format == "channels_first" else y


def _settings(strides, padding, dilation, data_format):
    return dict(
        strides=strides,
        padding=padding,
        dilation_rate=dilation,
        data_format=data_format,
    )


@pytest.mark.parametrize("family, implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "strides, padding, dilation",
    [((1, 1), "same", (1, 1)), ((2, 1), "valid", (1, 1)), ((1, 1), "same", (2, 1))],
)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_implementation_equals_conv_with_dense_kernel(
    family, implementation, strides, padding, dilation, data_format
):
    factors = _factors(family)
    shape = (2, 8, 9, C_IN) if data_format == "channels_last" else (2, C_IN, 8, 9)
    x = random_input(shape, seed=1)
    fn = getattr(functional, f"{family}_{implementation}")
    y = to_numpy(fn(x, *factors, **_settings(strides, padding, dilation, data_format)))
    kernel = to_numpy(getattr(functional, f"{family}_dense_kernel")(*factors))
    assert kernel.shape == (K, K, C_IN, C_OUT)
    ref = _reference(x, kernel, strides, padding, dilation, data_format)
    assert relative_error(y, ref) < RTOL


@pytest.mark.parametrize("family, implementation", sorted(FUSED_BIAS))
@pytest.mark.parametrize("expand_by_conv", [False, True])
def test_fused_bias_and_expand_by_conv(family, implementation, expand_by_conv):
    """The bias is added inside; expand_by_conv changes how, not what."""
    factors = _factors(family)
    x = random_input((2, 8, 8, C_IN), seed=1)
    bias = random_input((C_OUT,), seed=2)
    settings = _settings((1, 1), "same", (1, 1), "channels_last")
    fn = getattr(functional, f"{family}_{implementation}")
    y = to_numpy(fn(x, *factors, bias=bias, expand_by_conv=expand_by_conv, **settings))
    kernel = to_numpy(getattr(functional, f"{family}_dense_kernel")(*factors))
    ref = _reference(x, kernel, (1, 1), "same", (1, 1), "channels_last") + bias
    assert relative_error(y, ref) < RTOL


def test_bottleneck_residual_and_activation():
    squeeze, kernel, expand = (
        random_input(s, seed=i) for i, s in enumerate([(4, 2), (K, K, 2, 2), (2, 4)])
    )
    x = random_input((2, 6, 6, 4), seed=5)
    settings = _settings((1, 1), "same", (1, 1), "channels_last")
    y = to_numpy(
        functional.bottleneck_plain(
            x, squeeze, kernel, expand, residual=True, **settings
        )
    )
    dense = to_numpy(
        functional.bottleneck_dense_kernel(squeeze, kernel, expand, (1, 1))
    )
    ref = _reference(x, dense, (1, 1), "same", (1, 1), "channels_last")
    assert relative_error(y, ref) < RTOL
    relu = to_numpy(
        functional.bottleneck_matmul(
            x,
            squeeze,
            kernel,
            expand,
            intermediate_activation=keras.activations.relu,
            **settings,
        )
    )
    plain = to_numpy(
        functional.bottleneck_matmul(x, squeeze, kernel, expand, **settings)
    )
    assert not np.allclose(relu, plain)


@pytest.mark.parametrize("padding, strides", [("same", (1, 1)), ("valid", (2, 2))])
def test_stacked_equals_conv_with_composed_kernel(padding, strides):
    kernels = [
        random_input((3, 3, C_IN, 4), seed=1),
        random_input((3, 3, 4, 4), seed=2),
        random_input((3, 3, 4, C_OUT), seed=3),
    ]
    x = random_input((2, 11, 10, C_IN), seed=4)
    settings = _settings(strides, padding, (1, 1), "channels_last")
    y = to_numpy(functional.stacked_plain(x, kernels, **settings))
    dense = to_numpy(functional.stacked_dense_kernel(kernels))
    assert dense.shape == (7, 7, C_IN, C_OUT)
    ref = _reference(x, dense, strides, padding, (1, 1), "channels_last")
    assert relative_error(y, ref) < RTOL


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_depthwise_with_unequal_strides_equals_reference(data_format):
    """TensorFlow's depthwise kernel takes equal strides only; conv.depthwise
    takes any (compared with a dense conv by the block-diagonal kernel)."""
    kernel = random_input((3, 3, C_IN, 1), seed=1)
    shape = (2, 9, 8, C_IN) if data_format == "channels_last" else (2, C_IN, 9, 8)
    x = random_input(shape, seed=2)
    y = to_numpy(conv.depthwise(x, kernel, (2, 1), "same", 1, data_format))
    dense = np.zeros((3, 3, C_IN, C_IN), "float32")
    for c in range(C_IN):
        dense[:, :, c, c] = kernel[:, :, c, 0]
    ref = _reference(x, dense, (2, 1), "same", (1, 1), data_format)
    assert relative_error(y, ref) < RTOL


def test_add_bias_on_the_channel_axis():
    x = random_input((2, 4, 3, 4), seed=1)
    bias = random_input((4,), seed=2)
    tensor = keras.ops.convert_to_tensor(x)
    last = to_numpy(conv.add_bias(tensor, bias, "channels_last"))
    first = to_numpy(conv.add_bias(tensor, bias, "channels_first"))
    np.testing.assert_allclose(last, x + bias, rtol=1e-6)
    np.testing.assert_allclose(first, x + bias[:, None, None], rtol=1e-6)
    assert conv.add_bias(x, None, "channels_last") is x


def test_static_rule():
    rule = {"xla": "shift", keras.backend.backend(): "fused"}
    candidates = ("depthwise", "fused", "shift", "dense")

    def static(**kwargs):
        kwargs = {"flop_ratio": 4.0, "dense_macs": float("inf"), **kwargs}
        return policy.static_implementation(candidates, rule, **kwargs)

    assert static() == "fused"
    assert static(compilation="xla") == "shift"
    assert static(flop_ratio=1.1) == "dense"
    assert (
        policy.static_implementation(candidates[:3], rule, flop_ratio=1.1, dense_macs=0)
        == "fused"
    )
    tiny = static(dense_macs=policy.DENSE_TINY_MACS - 1)
    assert (tiny == "dense") == (keras.backend.backend() == "torch")
    assert static(dense_macs=0, training=True) == "fused"
    assert (
        policy.static_implementation(("depthwise",), rule, flop_ratio=4.0, dense_macs=0)
        == "depthwise"
    )


def test_dense_kernel_cache_rebuilds_off_eager_inference():
    """Off eager PyTorch inference (and with autograd on) every call builds
    the kernel."""
    calls = []

    def build():
        calls.append(1)
        return len(calls)

    cache = DenseKernelCache()
    variable = keras.Variable(np.ones((2, 2), "float32"))
    cache.get(build, [variable], "float32")
    cache.get(build, [variable], "float32")
    if keras.backend.backend() == "torch":
        import torch

        assert torch.is_grad_enabled()  # autograd on: nothing is kept
    assert len(calls) == 2
    assert cache.kernel is None
