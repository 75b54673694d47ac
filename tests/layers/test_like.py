"""``Layer.like(conv, ratio)``: the fast layer standing for one ``Conv2D``.

Sizes are checked against numbers written out by hand (the rule: ``ratio`` of
the channels, ``max(1, round(.))``), and the benchmark's variants and the
suggest step against the layers they built before they used ``like``.
"""

import math

import keras
import pytest

import fastconv
from fastconv.bench import models
from fastconv.convert import candidate_layer

L = keras.layers

#: Every class with a size rule, and the name of its size argument.
SIZED = [
    (fastconv.CPConv2D, "rank"),
    (fastconv.TuckerConv2D, "rank"),
    (fastconv.BottleneckConv2D, "bottleneck_filters"),
    (fastconv.FactorizedConv2D, "intermediate_filters"),
    (fastconv.StackedConv2D, "intermediate_filters"),
]
LIKE = [cls for cls, _ in SIZED] + [fastconv.DepthwiseSeparableConv2D]


def built_conv(c_in=64, filters=128, kernel_size=5, **kwargs):
    conv = L.Conv2D(filters, kernel_size, **kwargs)
    if conv.data_format == "channels_last":
        conv.build((None, 16, 16, c_in))
    else:
        conv.build((None, c_in, 16, 16))
    return conv


@pytest.mark.parametrize("cls", LIKE, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    "conv_kwargs",
    [
        dict(strides=(2, 1), padding="same", activation="relu", use_bias=False),
        dict(dilation_rate=2, data_format="channels_first", activation="tanh"),
    ],
    ids=["strided", "dilated"],
)
def test_like_copies_the_conv2d_configuration(cls, conv_kwargs):
    conv = built_conv(**conv_kwargs)
    layer = cls.like(conv)
    assert type(layer) is cls and not layer.built
    for name in ("filters", "kernel_size", "strides", "padding", "data_format"):
        assert getattr(layer, name) == getattr(conv, name), name
    assert layer.dilation_rate == conv.dilation_rate
    assert layer.activation is conv.activation
    assert layer.use_bias is conv.use_bias
    assert layer.name != conv.name


@pytest.mark.parametrize(
    "c_in, filters, ratio, expected",
    [
        # The example: 64 -> 128 channels, a quarter of them.
        (
            64,
            128,
            0.25,
            {
                "CPConv2D": 32,
                "TuckerConv2D": (16, 32),
                "BottleneckConv2D": 32,
                "FactorizedConv2D": 32,
                "StackedConv2D": 32,
            },
        ),
        # Rounded, halves to even: 0.25 * 14 = 3.5 -> 4, 0.25 * 10 = 2.5 -> 2.
        (
            10,
            14,
            0.25,
            {
                "CPConv2D": 4,
                "TuckerConv2D": (2, 4),
                "BottleneckConv2D": 4,
                "FactorizedConv2D": 4,
                "StackedConv2D": 4,
            },
        ),
        # Never below 1: 0.25 * 2 = 0.5 rounds to 0.
        (
            2,
            2,
            0.25,
            {
                "CPConv2D": 1,
                "TuckerConv2D": (1, 1),
                "BottleneckConv2D": 1,
                "FactorizedConv2D": 1,
                "StackedConv2D": 1,
            },
        ),
        # ratio=1 keeps every channel (CP: 25 * 64 * 128 // 128 is no bound).
        (
            64,
            128,
            1,
            {
                "CPConv2D": 128,
                "TuckerConv2D": (64, 128),
                "BottleneckConv2D": 128,
                "FactorizedConv2D": 128,
                "StackedConv2D": 128,
            },
        ),
    ],
)
def test_sizes_follow_the_one_rule(c_in, filters, ratio, expected):
    conv = built_conv(c_in, filters)
    for cls, argument in SIZED:
        assert cls.like_size(conv, ratio) == {argument: expected[cls.__name__]}
        layer = cls.like(conv, ratio)
        assert getattr(layer, argument) == expected[cls.__name__], cls.__name__
    assert fastconv.DepthwiseSeparableConv2D.like_size(conv, ratio) == {}
    assert fastconv.DepthwiseSeparableConv2D.like(conv, ratio).depth_multiplier == 1


def test_cp_rank_is_clamped_to_the_largest_cp_rank_of_the_kernel():
    # A 3x1 kernel from 2 to 64 channels: 3 * 1 * 2 * 64 // 64 = 6 < 64 / 4.
    conv = built_conv(2, 64, (3, 1))
    assert fastconv.CPConv2D.like_size(conv) == {"rank": 6}
    assert fastconv.CPConv2D(64, (3, 1), rank=1).max_rank(2) == 6
    # ... and the layer builds with it on 2 channels.
    layer = fastconv.CPConv2D.like(conv)
    assert tuple(layer(keras.ops.zeros((1, 8, 8, 2))).shape) == (1, 6, 8, 64)


def test_unbuilt_conv_takes_input_channels():
    conv = L.Conv2D(128, 5, padding="same")
    layer = fastconv.TuckerConv2D.like(conv, input_channels=64)
    assert layer.rank == (16, 32)
    assert tuple(layer(keras.ops.zeros((1, 8, 8, 64))).shape) == (1, 8, 8, 128)
    # A built conv may repeat its own channel count.
    assert fastconv.TuckerConv2D.like(built_conv(), input_channels=64).rank == (16, 32)


def test_overrides_replace_what_like_reads_off_the_conv_and_the_rule():
    conv = built_conv()
    layer = fastconv.CPConv2D.like(
        conv, rank=3, name="fast", padding="same", implementation="matmul"
    )
    assert (layer.rank, layer.name, layer.padding) == (3, "fast", "same")
    assert layer.implementation == "matmul"
    bottleneck = fastconv.BottleneckConv2D.like(conv, intermediate_activation="relu")
    assert bottleneck.intermediate_activation is keras.activations.relu
    assert fastconv.CPConv2D.like(conv) is not fastconv.CPConv2D.like(conv)


@pytest.mark.parametrize("cls", LIKE, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    "conv, exc, match",
    [
        (
            L.Dense(4),
            TypeError,
            "conv must be a keras.layers.Conv2D, received conv of type Dense",
        ),
        ({"filters": 4}, TypeError, "received conv of type dict"),
        (L.DepthwiseConv2D(3), TypeError, "received conv of type DepthwiseConv2D"),
        (L.Conv2D(8, 3, groups=2), ValueError, "received conv with groups=2"),
    ],
    ids=["dense", "dict", "depthwise", "grouped"],
)
def test_bad_conv_is_refused_naming_it(cls, conv, exc, match):
    with pytest.raises(exc, match=f"^{cls.__name__}.like: .*{match}"):
        cls.like(conv, input_channels=8)


@pytest.mark.parametrize("ratio", [0, -0.25, 1.5, math.nan, True, "0.25", None])
def test_bad_ratio_is_refused_naming_it(ratio):
    with pytest.raises(ValueError) as info:
        fastconv.CPConv2D.like(built_conv(), ratio)
    assert str(info.value) == (
        f"CPConv2D.like: ratio must be a number in (0, 1], received ratio={ratio!r}"
    )


def test_missing_or_wrong_input_channels_are_refused_naming_them():
    unbuilt = L.Conv2D(16, 3)
    with pytest.raises(ValueError, match=r"input_channels is needed .*not built"):
        fastconv.FactorizedConv2D.like(unbuilt)
    for bad in (0, 2.0, "8", True):
        with pytest.raises(ValueError, match=r"input_channels must be a positive int"):
            fastconv.FactorizedConv2D.like(unbuilt, input_channels=bad)
    with pytest.raises(ValueError, match=r"match the built conv's 64 .*=32"):
        fastconv.FactorizedConv2D.like(built_conv(), input_channels=32)


def test_a_rejected_configuration_fails_in_the_constructor():
    # StackedConv2D needs an odd square kernel of at least 5.
    with pytest.raises(ValueError, match="StackedConv2D: kernel_size must be square"):
        fastconv.StackedConv2D.like(built_conv(kernel_size=3))


def test_wide_conv2d_stands_for_a_stack_not_one_conv2d():
    with pytest.raises(TypeError, match=r"WideConv2D.like: .*wide_replacement"):
        fastconv.WideConv2D.like(built_conv())


# ------------------------------------------------- the callers, as before
def _size(layer):
    if isinstance(layer, (fastconv.CPConv2D, fastconv.TuckerConv2D)):
        return layer.rank
    if isinstance(layer, fastconv.BottleneckConv2D):
        return layer.bottleneck_channels
    if isinstance(layer, fastconv.DepthwiseSeparableConv2D):
        return layer.depth_multiplier
    return layer.intermediate_filters


def _fast_layers(dataset, variant):
    shape = (28, 28, 1) if dataset == "mnist" else (32, 32, 3)
    model = models.build_model(dataset, variant, shape, 10)
    return [
        (
            layer.name,
            layer.filters,
            layer.kernel_size,
            layer.padding,
            keras.activations.serialize(layer.activation),
            _size(layer),
        )
        for layer in model.layers
        if isinstance(layer, fastconv.BaseFastConv)
    ]


CIFAR_NAMES = ["conv2", "conv3_0", "conv3_1", "conv4_0", "conv4_1"]
CIFAR_FILTERS = [64, 128, 128, 256, 256]


@pytest.mark.parametrize(
    "variant, mnist_size, cifar_sizes",
    [
        ("cp", 16, [16, 32, 32, 64, 64]),
        ("tucker", (16, 16), [(16, 16), (32, 32), (32, 32), (64, 64), (64, 64)]),
        ("bottleneck", 16, [16, 32, 32, 64, 64]),
        ("factorized", 64, [64, 128, 128, 256, 256]),
        ("separable", 1, [1, 1, 1, 1, 1]),
    ],
)
def test_bench_variants_build_the_layers_they_built_before(
    variant, mnist_size, cifar_sizes
):
    assert _fast_layers("mnist", variant) == [
        ("conv2", 64, (5, 5), "valid", "relu", mnist_size)
    ]
    assert _fast_layers("cifar10", variant) == [
        (name, filters, (3, 3), "same", "relu", size)
        for name, filters, size in zip(
            CIFAR_NAMES, CIFAR_FILTERS, cifar_sizes, strict=True
        )
    ]


def test_bench_stacked_and_bottleneck_keep_their_relu_between():
    model = models.build_model("mnist", "stacked", (28, 28, 1), 10)
    stacked = model.get_layer("conv2")
    assert _fast_layers("mnist", "stacked") == [
        ("conv2", 64, (5, 5), "valid", "relu", 64)
    ]
    assert stacked.intermediate_activation is keras.activations.relu
    model = models.build_model("mnist", "bottleneck", (28, 28, 1), 10)
    assert model.get_layer("conv2").intermediate_activation is keras.activations.relu


def test_suggest_candidates_are_the_layers_they_were_before():
    conv = built_conv(64, 128, 3, padding="same", activation="relu")
    shape = (2, 16, 16, 64)
    labels = {}
    for name in ("CPConv2D", "TuckerConv2D", "BottleneckConv2D", "FactorizedConv2D"):
        label, layer = candidate_layer(name, conv, shape)
        labels[name] = label
        assert not layer.built
        config = layer.get_config()
        assert (config["filters"], config["kernel_size"], config["padding"]) == (
            128,
            (3, 3),
            "same",
        )
        assert config["activation"] == "relu"
    assert labels == {
        "CPConv2D": "CPConv2D(rank=32)",
        "TuckerConv2D": "TuckerConv2D(rank=(16, 32))",
        "BottleneckConv2D": "BottleneckConv2D(bottleneck_filters=32)",
        "FactorizedConv2D": "FactorizedConv2D(intermediate_filters=32)",
    }
    assert candidate_layer("CPConv2D", built_conv(2, 64, (3, 1)), (2, 8, 8, 2))[0] == (
        "CPConv2D(rank=6)"
    )
    label, _ = candidate_layer("TuckerConv2D", conv, shape, fraction=0.5)
    assert label == "TuckerConv2D(rank=(32, 64))"


@pytest.mark.parametrize("name", ["WideConv2D", "BaseFastConv", "Conv2D", "nope"])
def test_suggest_refuses_what_cannot_stand_for_one_conv2d(name):
    exc = TypeError if name == "WideConv2D" else ValueError
    with pytest.raises(exc, match=name):
        candidate_layer(name, built_conv(), (2, 16, 16, 64))
