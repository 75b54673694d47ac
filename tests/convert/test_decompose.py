"""fastconv.decompose: one Conv2D -> one fast layer."""

import warnings

import keras
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fastconv
from fastconv.convert import parse_rank
from fastconv.convert.decompose import _decompose
from fastconv.decomposition import RankClampedWarning, max_rank
from tests.layer_checks import random_input, relative_error, to_numpy

CLASSES = {
    "cp": fastconv.CPConv2D,
    "tucker": fastconv.TuckerConv2D,
    "factorized": fastconv.FactorizedConv2D,
    "separable": fastconv.DepthwiseSeparableConv2D,
}


def built_conv(
    c_in=4, filters=6, kernel_size=3, input_hw=(9, 8), seed=0, bias=True, **kwargs
):
    """A built Conv2D with random kernel and bias (a nonzero bias, so it counts)."""
    conv = keras.layers.Conv2D(filters, kernel_size, use_bias=bias, **kwargs)
    if conv.data_format == "channels_last":
        conv.build((None, *input_hw, c_in))
    else:
        conv.build((None, c_in, *input_hw))
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(conv.kernel.shape).astype("float32")]
    if bias:
        weights.append(rng.standard_normal(filters).astype("float32"))
    conv.set_weights(weights)
    return conv


def conv_reference(conv, x) -> np.ndarray:
    """The Conv2D's output, computed channels-last (TF's CPU Conv2D takes only
    that) and transposed back for a channels-first layer."""
    channels_first = conv.data_format == "channels_first"
    x_last = np.transpose(x, (0, 2, 3, 1)) if channels_first else x
    config = {**conv.get_config(), "data_format": "channels_last", "name": "ref"}
    ref = keras.layers.Conv2D.from_config(config)
    ref.build(x_last.shape)
    ref.set_weights(conv.get_weights())
    y = to_numpy(ref(x_last))
    return np.transpose(y, (0, 3, 1, 2)) if channels_first else y


def full_rank(conv, method):
    return max_rank(tuple(conv.kernel.shape), method)


# ------------------------------------------------------------ exactness
@settings(max_examples=12)
@given(
    method=st.sampled_from(["tucker", "factorized", "separable"]),
    c_in=st.integers(1, 4),
    filters=st.integers(1, 5),
    k_h=st.integers(1, 3),
    k_w=st.integers(1, 3),
    # strides > 1 with dilation_rate > 1 is refused: draw only allowed pairs.
    stride_dilation=st.sampled_from([(1, 1), (2, 1), ((1, 2), 1), (1, 2)]),
    padding=st.sampled_from(["valid", "same"]),
    bias=st.booleans(),
    data_format=st.sampled_from(["channels_last", "channels_first"]),
    activation=st.sampled_from([None, "relu"]),
)
def test_full_rank_reproduces_the_conv(
    method,
    c_in,
    filters,
    k_h,
    k_w,
    stride_dilation,
    padding,
    bias,
    data_format,
    activation,
):
    assume(method != "factorized" or (k_h, k_w) != (1, 1))
    stride, dilation = stride_dilation
    conv = built_conv(
        c_in,
        filters,
        (k_h, k_w),
        bias=bias,
        strides=stride,
        dilation_rate=dilation,
        padding=padding,
        data_format=data_format,
        activation=activation,
    )
    new = fastconv.decompose(conv, method, rank=full_rank(conv, method))
    assert type(new) is CLASSES[method]
    assert new.built
    assert (new.strides, new.padding, new.dilation_rate, new.data_format) == (
        conv.strides,
        conv.padding,
        conv.dilation_rate,
        conv.data_format,
    )
    shape = (2, 9, 8, c_in) if data_format == "channels_last" else (2, c_in, 9, 8)
    x = random_input(shape)
    assert relative_error(to_numpy(new(x)), conv_reference(conv, x)) < 1e-4


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_cp_recovers_a_kernel_of_known_cp_rank(data_format, padding):
    rng = np.random.default_rng(1)
    rank, (kh, kw, c_in, c_out) = 3, (3, 3, 5, 6)
    kernel = np.einsum(
        "hr,wr,cr,or->hwco",
        rng.standard_normal((kh, rank)),
        rng.standard_normal((kw, rank)),
        rng.standard_normal((c_in, rank)),
        rng.standard_normal((c_out, rank)),
    ).astype("float32")
    conv = built_conv(c_in, c_out, 3, padding=padding, data_format=data_format)
    conv.set_weights([kernel, conv.get_weights()[1]])
    found = _decompose(conv, "cp", rank, n_iter_max=500, tol=1e-12, random_state=0)
    assert found.relative_error < 1e-5
    shape = (2, 9, 8, c_in) if data_format == "channels_last" else (2, c_in, 9, 8)
    x = random_input(shape)
    assert relative_error(to_numpy(found.layer(x)), conv_reference(conv, x)) < 1e-4


@pytest.mark.parametrize("method", ["cp", "tucker", "factorized", "separable"])
def test_error_falls_as_rank_grows(method):
    conv = built_conv(6, 8, 3)
    top = full_rank(conv, method)
    top = top[0] if isinstance(top, tuple) else top
    ranks = sorted({1, 2, 3, top // 2, top})
    options = {"random_state": 0} if method in ("cp", "tucker") else {}
    errors = [
        _decompose(conv, method, rank, **options).relative_error for rank in ranks
    ]
    if method == "cp":  # ALS is not monotone step by step; the trend is.
        assert errors[-1] < errors[0]
    else:
        assert all(b <= a + 1e-9 for a, b in zip(errors, errors[1:], strict=False))
        if method != "tucker":  # Tucker's full rank needs (C_in, C_out).
            assert errors[-1] < 1e-6


# ------------------------------------------------------ what is carried
def test_bias_activation_name_dtype_and_trainable_are_kept():
    conv = built_conv(
        4, 6, 3, activation="relu", padding="same", dtype="mixed_float16", name="c"
    )
    conv.trainable = False
    new = fastconv.decompose(conv, "tucker", rank=(2, 3))
    assert new.name == "c_tucker"
    assert new.activation is keras.activations.relu
    assert new.dtype_policy.name == "mixed_float16"
    assert new.trainable is False
    np.testing.assert_array_equal(to_numpy(new.bias), to_numpy(conv.bias))
    assert fastconv.decompose(conv, "cp", rank=2, name="mine").name == "mine"


def test_no_bias_stays_without_bias():
    new = fastconv.decompose(built_conv(bias=False), "factorized", rank=3)
    assert not new.use_bias and new.bias is None


def test_options_pass_through_and_random_state_reproduces():
    conv = built_conv(6, 8, 3)
    a = fastconv.decompose(conv, "cp", rank=5, random_state=3, init="random")
    b = fastconv.decompose(conv, "cp", rank=5, random_state=3, init="random")
    for x, y in zip(a.get_factors().values(), b.get_factors().values(), strict=True):
        np.testing.assert_array_equal(x, y)
    one = _decompose(conv, "cp", rank=5, n_iter_max=1, random_state=0)
    many = _decompose(conv, "cp", rank=5, n_iter_max=200, random_state=0)
    assert many.relative_error < one.relative_error


def test_rank_forms():
    conv = built_conv(8, 8, 3)
    assert _decompose(conv, "tucker", 0.25).rank == (3, 3)
    assert _decompose(conv, "tucker", "energy:0.999").rank[0] >= 7
    assert isinstance(_decompose(conv, "factorized", "vbmf").rank, int)
    with pytest.warns(RankClampedWarning, match="layer 'conv2d"):
        assert _decompose(conv, "separable", 50).rank == 8


@pytest.mark.parametrize("method", ["cp", "tucker", "factorized", "separable"])
def test_no_rank_means_the_methods_default_rank(method):
    from fastconv.convert.decompose import DEFAULT_RANKS

    conv = built_conv(8, 8, 3, seed=1)
    kwargs = {"random_state": 0} if method == "cp" else {}
    default = _decompose(conv, method, **kwargs)
    explicit = _decompose(conv, method, DEFAULT_RANKS[method], **kwargs)
    assert default.rank == explicit.rank
    assert fastconv.decompose(conv, method, **kwargs).count_params() == (
        explicit.layer.count_params()
    )
    assert DEFAULT_RANKS[method] == (0.25 if method == "cp" else "energy:0.9")


def test_tucker_layer_is_re_decomposed_with_smaller_ranks():
    conv = built_conv(6, 8, 3, padding="same", strides=2)
    tucker = fastconv.decompose(conv, "tucker", rank=(6, 8))
    smaller = fastconv.decompose(tucker, "tucker", rank=(3, 4))
    assert smaller.rank == (3, 4)
    assert smaller.name == f"{tucker.name}_tucker"
    assert smaller.strides == (2, 2) and smaller.padding == "same"
    direct = fastconv.decompose(conv, "tucker", rank=(3, 4))
    np.testing.assert_allclose(
        smaller.dense_kernel(), direct.dense_kernel(), rtol=1e-3, atol=1e-4
    )
    np.testing.assert_array_equal(to_numpy(smaller.bias), to_numpy(conv.bias))
    as_cp = fastconv.decompose(tucker, "cp", rank=4, random_state=0)
    assert type(as_cp) is fastconv.CPConv2D


def test_auto_picks_the_cheapest_within_the_error_bound():
    conv = built_conv(8, 8, 3, padding="same")
    found = _decompose(conv, "auto", 0.5, input_shape=(None, 16, 16, 8))
    usable = [c for c in found.candidates if c["relative_error"] <= 0.3]
    assert {c["method"] for c in found.candidates} == set(CLASSES)
    if usable:
        assert found.method == min(usable, key=lambda c: c["macs"])["method"]
    else:
        best = min(found.candidates, key=lambda c: c["relative_error"])
        assert found.method == best["method"]
    loose = _decompose(conv, "auto", 0.5, max_error=10.0, input_shape=(16, 16, 8))
    cheapest = min(loose.candidates, key=lambda c: c["macs"])
    assert loose.method == cheapest["method"]
    assert loose.layer.name == f"{conv.name}_{loose.method}"


def test_auto_on_a_1x1_conv_skips_spatial_methods():
    conv = built_conv(8, 8, 1)
    found = _decompose(conv, "auto", 4, max_error=10.0)
    skipped = {c["method"] for c in found.candidates if "skipped" in c}
    assert skipped == {"cp", "factorized"}
    assert found.method in ("tucker", "separable")


# ------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "layer, error, match",
    [
        (keras.layers.Dense(3), TypeError, "'dense.*' is a Dense"),
        (keras.layers.Conv1DTranspose(3, 3), TypeError, "is a Conv1DTranspose"),
        (keras.layers.Conv3DTranspose(3, 3), TypeError, "is a Conv3DTranspose"),
        (keras.layers.DepthwiseConv2D(3), TypeError, "is a DepthwiseConv2D"),
        ("conv", TypeError, "received an object of type str"),
    ],
)
def test_not_a_conv2d(layer, error, match):
    with pytest.raises(error, match=match):
        fastconv.decompose(layer, "tucker", rank=2)


def test_unbuilt_layer():
    with pytest.raises(ValueError, match="'late' is not built"):
        fastconv.decompose(keras.layers.Conv2D(4, 3, name="late"), "tucker", rank=2)


def test_grouped_conv():
    conv = keras.layers.Conv2D(4, 3, groups=2, name="grouped")
    conv.build((None, 8, 8, 4))
    with pytest.raises(ValueError, match="'grouped' has groups=2.*not supported"):
        fastconv.decompose(conv, "tucker", rank=2)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'cp', 'tucker'.*method='svd'.*'conv2d"):
        fastconv.decompose(built_conv(), "svd", rank=2)


@pytest.mark.parametrize("rank", ["8", "energy:2", "energy:x", "vbm", 0, -1, 1.5, True])
def test_bad_rank_names_the_layer_and_the_argument(rank):
    with pytest.raises(ValueError, match=r"layer 'conv2d.*rank"):
        fastconv.decompose(built_conv(), "tucker", rank=rank)


def test_rank_above_the_maximum_is_clamped_with_a_warning():
    conv = built_conv(4, 6, 3, name="big")
    with pytest.warns(RankClampedWarning, match="layer 'big'.*using 12") as caught:
        new = fastconv.decompose(conv, "factorized", rank=100)
    assert new.intermediate_filters == 12
    clamped = [w for w in caught if w.category is RankClampedWarning]
    assert [w.filename for w in clamped] == [__file__]


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_kernel(value):
    conv = built_conv(name="broken")
    kernel, bias = conv.get_weights()
    kernel[0, 0, 0, 0] = value
    conv.set_weights([kernel, bias])
    with pytest.raises(ValueError, match="'broken' has NaN or Inf"):
        fastconv.decompose(conv, "tucker", rank=2)


def test_1x1_kernel_with_a_spatial_method():
    with pytest.raises(ValueError, match="1x1 kernel"):
        fastconv.decompose(built_conv(kernel_size=1), "cp", rank=2)


def test_unknown_option():
    with pytest.raises(TypeError, match="'factorized' takes no option 'tol'"):
        fastconv.decompose(built_conv(), "factorized", rank=2, tol=1e-3)
    with pytest.raises(TypeError, match="no method takes option 'bogus'"):
        fastconv.decompose(built_conv(), "auto", rank=2, bogus=1)


def test_bad_option_value_names_the_layer():
    with pytest.raises(ValueError, match="layer 'conv2d.*n_iter_max"):
        fastconv.decompose(built_conv(), "cp", rank=2, n_iter_max=-1)


def test_nonlinear_fastconv_layer():
    layer = fastconv.DepthwiseSeparableConv2D(4, 3, intermediate_activation="relu")
    layer.build((None, 8, 8, 3))
    with pytest.raises(ValueError, match="not a linear map"):
        fastconv.decompose(layer, "tucker", rank=2)


def test_the_original_layer_is_untouched():
    conv = built_conv()
    before = [w.copy() for w in conv.get_weights()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankClampedWarning)
        for method in CLASSES:
            fastconv.decompose(conv, method, rank=2)
    for a, b in zip(before, conv.get_weights(), strict=True):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize(
    "text, value",
    [
        ("8", 8),
        ("0.25", 0.25),
        ("1e-1", 0.1),
        ("16,32", (16, 32)),
        ("vbmf", "vbmf"),
        ("energy:0.9", "energy:0.9"),
    ],
)
def test_parse_rank(text, value):
    assert parse_rank(text) == value


@pytest.mark.parametrize("text", ["", "eight", "energy:", "energy:1.5", "1,2,3", "-3"])
def test_parse_rank_rejects(text):
    with pytest.raises(ValueError, match="rank must be"):
        parse_rank(text)


# ------------------------------------------------------ 1-D and 3-D convolutions
def _built(conv, input_shape):
    conv.build(input_shape)
    conv.kernel.assign(
        np.random.default_rng(0).normal(size=conv.kernel.shape).astype("float32")
    )
    return conv


@pytest.mark.parametrize(
    "conv, input_shape, expected",
    [
        (keras.layers.Conv1D(5, 3, padding="causal"), (2, 9, 4), fastconv.TuckerConv1D),
        (
            keras.layers.Conv3D(5, (3, 1, 2), strides=(1, 2, 1)),
            (2, 4, 6, 5, 3),
            fastconv.TuckerConv3D,
        ),
    ],
)
def test_nd_tucker_at_full_rank_is_exact(conv, input_shape, expected):
    conv = _built(conv, input_shape)
    found = _decompose(conv, "tucker", (input_shape[-1], 5))
    assert type(found.layer) is expected
    assert found.layer.padding == conv.padding
    assert found.relative_error < 1e-6
    x = np.random.default_rng(1).normal(size=input_shape).astype("float32")
    y, y_fast = (keras.ops.convert_to_numpy(layer(x)) for layer in (conv, found.layer))
    np.testing.assert_allclose(y_fast, y, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spatial", [(3,), (2, 3, 3)])
def test_nd_cp_recovers_a_cp_kernel(spatial):
    rng = np.random.default_rng(0)
    parts = [rng.normal(size=(n, 2)) for n in (*spatial, 4, 5)]
    letters = "abcde"[: len(parts)]
    kernel = np.einsum(",".join(f"{c}r" for c in letters) + "->" + letters, *parts)
    conv = (keras.layers.Conv1D if len(spatial) == 1 else keras.layers.Conv3D)(
        5, spatial
    )
    conv.build((None, *(8,) * len(spatial), 4))
    conv.kernel.assign(kernel.astype("float32"))
    found = _decompose(conv, "cp", 2)
    assert type(found.layer).__name__ == f"CPConv{len(spatial)}D"
    assert found.relative_error < 1e-4
    np.testing.assert_allclose(found.layer.dense_kernel(), kernel, atol=1e-4)


def test_nd_refuses_the_2d_only_methods_and_auto_skips_them():
    conv = _built(keras.layers.Conv1D(4, 3, name="seq"), (None, 9, 3))
    with pytest.raises(ValueError) as info:
        fastconv.decompose(conv, "factorized", 2)
    assert "'seq' cannot use method='factorized'" in str(info.value)
    assert "exists for 2-D convolutions only" in str(info.value)
    found = _decompose(conv, "auto", 2, max_error=10.0)
    skipped = {c["method"] for c in found.candidates if "skipped" in c}
    assert skipped == {"factorized", "separable"}


def test_convert_model_converts_conv1d_and_keeps_causality():
    inputs = keras.Input((12, 3))
    x = keras.layers.Conv1D(6, 3, padding="causal", name="first")(inputs)
    outputs = keras.layers.Conv1D(6, 3, padding="causal", name="second")(x)
    model = keras.Model(inputs, outputs)
    new_model, report = fastconv.convert_model(model, method="tucker", rank=(6, 6))
    layer = new_model.get_layer("second_tucker")
    assert type(layer) is fastconv.TuckerConv1D and layer.padding == "causal"
    x = np.random.default_rng(0).normal(size=(2, 12, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(new_model(x)),
        keras.ops.convert_to_numpy(model(x)),
        rtol=1e-4,
        atol=1e-4,
    )
