"""What every public ``BaseFastConv`` layer must do, checked on all of them.

``LAYERS`` holds one small valid configuration per layer; ``CASES`` the
configurations that go through ``check_layer`` (calls and output shape, one
training step, config, ``.keras`` and ``.weights.h5`` round trips, mixed
precision). The 1-D and 3-D layers are in both tables, and their outputs are
checked here against ``Conv1D``/``Conv3D`` with their dense kernel. A layer's
own arguments and formulas are tested in its own file.
"""

import re

import numpy as np
import pytest

import fastconv
from tests.layer_checks import (
    assert_matches_conv2d,
    check_layer,
    random_input,
    to_numpy,
)

pytestmark = pytest.mark.layers

LAYERS = {
    fastconv.BottleneckConv1D: dict(filters=4, kernel_size=3, bottleneck_filters=2),
    fastconv.BottleneckConv2D: dict(filters=4, kernel_size=3, bottleneck_filters=2),
    fastconv.BottleneckConv3D: dict(filters=4, kernel_size=3, bottleneck_filters=2),
    fastconv.CPConv1D: dict(filters=4, kernel_size=3, rank=2),
    fastconv.CPConv2D: dict(filters=4, kernel_size=3, rank=2),
    fastconv.CPConv3D: dict(filters=4, kernel_size=3, rank=2),
    fastconv.DepthwiseSeparableConv1D: dict(filters=4, kernel_size=3),
    fastconv.DepthwiseSeparableConv2D: dict(filters=4, kernel_size=3),
    fastconv.DepthwiseSeparableConv3D: dict(filters=4, kernel_size=3),
    fastconv.FactorizedConv2D: dict(filters=4, kernel_size=3, intermediate_filters=2),
    fastconv.FactorizedConv3D: dict(filters=4, kernel_size=3, mid_filters=2),
    fastconv.StackedConv2D: dict(filters=4, kernel_size=5, intermediate_filters=2),
    fastconv.TuckerConv1D: dict(filters=4, kernel_size=3, rank=2),
    fastconv.TuckerConv2D: dict(filters=4, kernel_size=3, rank=2),
    fastconv.TuckerConv3D: dict(filters=4, kernel_size=3, rank=2),
    fastconv.WideConv2D: dict(filters=4, kernel_size=3, merged_layers=2),
}
LAYER_IDS = [cls.__name__ for cls in LAYERS]
LAYERS_2D = {cls: kwargs for cls, kwargs in LAYERS.items() if cls.SPATIAL_DIMS == 2}
LAYERS_ND = {cls: kwargs for cls, kwargs in LAYERS.items() if cls.SPATIAL_DIMS != 2}


def _example_shape(cls, channels=3):
    """A small built-input shape of ``cls``'s rank, channels last."""
    return (None, *(9, 10, 8)[: cls.SPATIAL_DIMS], channels)


#: 1-D and 3-D cases: (class, kwargs, input shape); each also goes through
#: ``test_nd_layers_match_the_dense_convolution``.
ND_CASES = [
    (
        fastconv.BottleneckConv1D,
        dict(filters=5, kernel_size=3, bottleneck_filters=2, strides=2),
        (2, 9, 3),
    ),
    (
        fastconv.BottleneckConv1D,
        dict(filters=4, kernel_size=3, residual=True, padding="causal"),
        (2, 9, 4),
    ),
    (
        fastconv.BottleneckConv3D,
        dict(
            filters=4,
            kernel_size=(3, 1, 3),
            bottleneck_filters=2,
            padding="same",
            data_format="channels_first",
        ),
        (2, 3, 4, 5, 6),
    ),
    (fastconv.CPConv1D, dict(filters=5, kernel_size=3, rank=3), (2, 9, 3)),
    (
        fastconv.CPConv1D,
        dict(
            filters=4,
            kernel_size=3,
            rank=2,
            padding="causal",
            dilation_rate=2,
            data_format="channels_first",
        ),
        (2, 3, 9),
    ),
    (
        fastconv.CPConv3D,
        dict(filters=4, kernel_size=(3, 3, 2), rank=3, strides=(1, 2, 1)),
        (2, 4, 6, 5, 3),
    ),
    (
        fastconv.CPConv3D,
        dict(filters=4, kernel_size=3, rank=2, padding="same", use_bias=False),
        (2, 3, 4, 5, 3),
    ),
    (
        fastconv.DepthwiseSeparableConv1D,
        dict(filters=5, kernel_size=3, depth_multiplier=2, padding="causal"),
        (2, 9, 3),
    ),
    (
        fastconv.DepthwiseSeparableConv3D,
        dict(filters=4, kernel_size=3, padding="same", strides=2),
        (2, 4, 5, 6, 3),
    ),
    (
        fastconv.DepthwiseSeparableConv3D,
        dict(filters=4, kernel_size=(1, 3, 3), data_format="channels_first"),
        (2, 3, 4, 5, 6),
    ),
    (fastconv.FactorizedConv3D, dict(filters=4, kernel_size=3), (2, 4, 5, 6, 3)),
    (
        fastconv.FactorizedConv3D,
        dict(
            filters=4,
            kernel_size=(2, 3, 3),
            mid_filters=3,
            strides=(2, 1, 2),
            padding="same",
            data_format="channels_first",
        ),
        (2, 3, 5, 6, 7),
    ),
    (
        fastconv.TuckerConv1D,
        dict(filters=5, kernel_size=4, rank=(2, 3), padding="same"),
        (2, 9, 3),
    ),
    (
        fastconv.TuckerConv1D,
        dict(filters=4, kernel_size=3, rank=2, padding="causal"),
        (2, 9, 3),
    ),
    (
        fastconv.TuckerConv3D,
        dict(filters=4, kernel_size=3, rank=(2, 3), dilation_rate=(1, 2, 1)),
        (2, 4, 6, 5, 3),
    ),
]

CASES = [
    (fastconv.BottleneckConv2D, dict(filters=8, kernel_size=3), (2, 8, 8, 4)),
    (
        fastconv.BottleneckConv2D,
        dict(
            filters=6,
            kernel_size=(3, 5),
            bottleneck_filters=3,
            strides=2,
            padding="same",
            data_format="channels_first",
        ),
        (2, 4, 9, 7),
    ),
    (
        fastconv.BottleneckConv2D,
        dict(
            filters=6,
            kernel_size=3,
            bottleneck_ratio=0.5,
            residual=True,
            padding="same",
            dilation_rate=2,
            intermediate_activation="relu",
            activation="relu",
            use_bias=False,
        ),
        (2, 8, 8, 6),
    ),
    (fastconv.CPConv2D, dict(filters=6, kernel_size=3, rank=4), (2, 8, 8, 3)),
    (
        fastconv.CPConv2D,
        dict(filters=6, kernel_size=(3, 5), rank=4, padding="same", strides=2),
        (2, 9, 7, 3),
    ),
    (
        fastconv.CPConv2D,
        dict(filters=4, kernel_size=3, rank=2, dilation_rate=2, use_bias=False),
        (2, 9, 9, 5),
    ),
    (
        fastconv.CPConv2D,
        dict(
            filters=4,
            kernel_size=3,
            rank=3,
            data_format="channels_first",
            activation="relu",
            padding="same",
        ),
        (2, 5, 8, 8),
    ),
    (fastconv.DepthwiseSeparableConv2D, dict(filters=6, kernel_size=3), (2, 8, 8, 4)),
    (
        fastconv.DepthwiseSeparableConv2D,
        dict(
            filters=6,
            kernel_size=(3, 5),
            depth_multiplier=2,
            strides=2,
            padding="same",
            data_format="channels_first",
            intermediate_batchnorm=True,
        ),
        (2, 4, 9, 7),
    ),
    (
        fastconv.DepthwiseSeparableConv2D,
        dict(
            filters=4,
            kernel_size=3,
            dilation_rate=2,
            intermediate_batchnorm=True,
            intermediate_activation="relu6",
            activation="relu",
            use_bias=False,
        ),
        (2, 9, 9, 3),
    ),
    (fastconv.FactorizedConv2D, dict(filters=6, kernel_size=3), (2, 8, 8, 3)),
    (
        fastconv.FactorizedConv2D,
        dict(
            filters=6,
            kernel_size=(3, 5),
            intermediate_filters=4,
            padding="same",
            strides=2,
        ),
        (2, 9, 7, 3),
    ),
    (
        fastconv.FactorizedConv2D,
        dict(filters=4, kernel_size=3, dilation_rate=2, use_bias=False),
        (2, 9, 9, 5),
    ),
    (
        fastconv.FactorizedConv2D,
        dict(
            filters=4,
            kernel_size=(1, 3),
            intermediate_filters=3,
            data_format="channels_first",
            activation="relu",
            padding="same",
        ),
        (2, 5, 8, 8),
    ),
    (
        fastconv.StackedConv2D,
        dict(filters=6, kernel_size=5, padding="same"),
        (2, 8, 8, 3),
    ),
    (
        fastconv.StackedConv2D,
        dict(filters=4, kernel_size=7, intermediate_filters=3, dilation_rate=2),
        (2, 15, 14, 3),
    ),
    (
        fastconv.StackedConv2D,
        dict(
            filters=4,
            kernel_size=(5, 5),
            strides=2,
            padding="same",
            use_bias=False,
            data_format="channels_first",
        ),
        (2, 3, 9, 8),
    ),
    (
        fastconv.StackedConv2D,
        dict(
            filters=4,
            kernel_size=7,
            intermediate_filters=5,
            intermediate_activation="relu",
            activation="relu",
            padding="same",
        ),
        (2, 8, 8, 3),
    ),
    (fastconv.TuckerConv2D, dict(filters=6, kernel_size=3, rank=2), (2, 8, 8, 4)),
    (
        fastconv.TuckerConv2D,
        dict(filters=6, kernel_size=(3, 5), rank=(3, 4), padding="same", strides=2),
        (2, 9, 7, 4),
    ),
    (
        fastconv.TuckerConv2D,
        dict(filters=4, kernel_size=3, rank=(2, 3), dilation_rate=2, use_bias=False),
        (2, 9, 9, 5),
    ),
    (
        fastconv.TuckerConv2D,
        dict(
            filters=4,
            kernel_size=3,
            rank=3,
            data_format="channels_first",
            activation="relu",
            padding="same",
        ),
        (2, 5, 8, 8),
    ),
    (
        fastconv.WideConv2D,
        dict(filters=4, kernel_size=3, merged_layers=2),
        (2, 8, 8, 3),
    ),
    (
        fastconv.WideConv2D,
        dict(filters=3, kernel_size=(1, 1), merged_layers=4, strides=2),
        (2, 7, 8, 3),
    ),
    (
        fastconv.WideConv2D,
        dict(
            filters=4,
            kernel_size=(3, 5),
            dilation_rate=2,
            padding="same",
            use_bias=False,
            data_format="channels_first",
        ),
        (2, 3, 9, 9),
    ),
    (
        fastconv.WideConv2D,
        dict(
            filters=5,
            kernel_size=3,
            merged_layers=3,
            activation="relu",
            padding="same",
            strides=(2, 1),
        ),
        (2, 8, 8, 3),
    ),
    *ND_CASES,
]


def _case_ids():
    seen = {}
    ids = []
    for cls, _, _ in CASES:
        seen[cls] = seen.get(cls, 0) + 1
        ids.append(f"{cls.__name__}-{seen[cls]}")
    return ids


def test_every_public_layer_is_in_the_table():
    public = {
        value
        for value in map(fastconv.__dict__.get, fastconv.__all__)
        if isinstance(value, type)
        and issubclass(value, fastconv.BaseFastConv)
        and value is not fastconv.BaseFastConv
    }
    assert public == set(LAYERS)
    assert {cls for cls, _, _ in CASES} == public


@pytest.mark.parametrize("cls, kwargs, input_shape", CASES, ids=_case_ids())
def test_layer_checks(cls, kwargs, input_shape, tmp_path):
    check_layer(cls, kwargs, input_shape, tmp_path)


BAD_ARGUMENTS = [
    (dict(filters=0), "filters must be a positive int, received filters=0"),
    (dict(filters=2.5), "received filters=2.5"),
    (dict(filters=True), "received filters=True"),
    (dict(kernel_size=0), "received kernel_size=0"),
    (dict(kernel_size=(3, 0)), "received kernel_size=(3, 0)"),
    (dict(kernel_size=(3, 3, 3)), "received kernel_size=(3, 3, 3)"),
    (dict(kernel_size="3"), "received kernel_size='3'"),
    (dict(strides=0), "strides must be a positive int or a pair of them"),
    (dict(strides=(1, 2, 1)), "received strides=(1, 2, 1)"),
    (dict(dilation_rate=(1, 0)), "received dilation_rate=(1, 0)"),
    (dict(dilation_rate=1.5), "received dilation_rate=1.5"),
    (dict(padding="full"), "received padding='full'"),
    (dict(padding=None), "received padding=None"),
    (dict(data_format="NHWC"), "received data_format='NHWC'"),
    (dict(use_bias="yes"), "use_bias must be a bool, received use_bias='yes'"),
    (dict(implementation="fast"), "received implementation='fast'"),
    (
        dict(strides=2, dilation_rate=2),
        "strides > 1 cannot be combined with dilation_rate > 1, received "
        "strides=2 and dilation_rate=2",
    ),
    (
        dict(strides=(1, 2), dilation_rate=(2, 1)),
        "received strides=(1, 2) and dilation_rate=(2, 1)",
    ),
]


@pytest.mark.parametrize("cls", LAYERS_2D, ids=[c.__name__ for c in LAYERS_2D])
@pytest.mark.parametrize(
    "bad, message", BAD_ARGUMENTS, ids=[m for _, m in BAD_ARGUMENTS]
)
def test_bad_arguments(cls, bad, message):
    with pytest.raises(ValueError) as info:
        cls(**{**LAYERS[cls], **bad})
    assert str(info.value).startswith(f"{cls.__name__}: ")
    assert message in str(info.value)


@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
def test_other_layers_implementations_are_refused(cls):
    others = {
        name
        for other in LAYERS
        for name in other.IMPLEMENTATIONS
        if name not in cls.IMPLEMENTATIONS
    }
    assert others
    for name in sorted(others):
        with pytest.raises(ValueError) as info:
            cls(**LAYERS[cls], implementation=name)
        assert str(info.value).startswith(f"{cls.__name__}: implementation must be")
        assert f"received implementation={name!r}" in str(info.value)


@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
def test_dense_kernel_and_factors_need_a_built_layer(cls):
    layer = cls(**LAYERS[cls])
    calls = {
        "dense_kernel()": layer.dense_kernel,
        "get_factors()": layer.get_factors,
        "set_factors()": lambda: layer.set_factors({}),
    }
    for what, call in calls.items():
        message = f"{cls.__name__}: {what} needs a built layer"
        with pytest.raises(ValueError, match="^" + re.escape(message)):
            call()


@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
def test_set_factors_rejects_wrong_names_and_shapes(cls):
    layer = cls(**LAYERS[cls])
    layer.build(_example_shape(cls))
    factors = layer.get_factors()
    assert {n: f.shape for n, f in factors.items()} == layer.factor_shapes(3)
    first, *_ = factors
    wrong = np.ones(factors[first].shape + (1,))
    shape_message = f"{cls.__name__}: factor {first!r} must have shape "
    with pytest.raises(
        ValueError, match="^" + re.escape(f"{shape_message}{factors[first].shape}")
    ):
        layer.set_factors({**factors, first: wrong})
    with pytest.raises(ValueError, match=rf"missing \['{first}'\]"):
        layer.set_factors({n: f for n, f in factors.items() if n != first})
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        layer.set_factors({**factors, "extra": wrong})
    with pytest.raises(TypeError, match="factors must be a mapping"):
        layer.set_factors(list(factors.values()))


@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
def test_cost_params_count_the_built_weights(cls):
    layer = cls(**LAYERS[cls])
    shape = _example_shape(cls)
    cost = layer.cost(shape[1:])
    layer.build(shape)
    assert cost.params == sum(int(np.prod(w.shape)) for w in layer.trainable_weights)


_TUPLES = {1: "a 1-tuple", 3: "a triple"}


def _nd_bad_arguments(cls):
    """(arguments, message) pairs that ``cls`` (1-D or 3-D) refuses."""
    n = cls.SPATIAL_DIMS
    tuple_of = _TUPLES[n]
    wrong = (3,) * (n + 1)
    cases = [
        (
            dict(kernel_size=wrong),
            f"kernel_size must be a positive int or {tuple_of} of them, "
            f"received kernel_size={wrong!r}",
        ),
        (dict(kernel_size=(3, 3)), "received kernel_size=(3, 3)"),
        (dict(strides=(1,) * (n + 1)), f"received strides={(1,) * (n + 1)!r}"),
        (dict(dilation_rate=(0,) * n), f"received dilation_rate={(0,) * n!r}"),
        (dict(padding="full"), "received padding='full'"),
    ]
    if n == 3:
        cases.append(
            (
                dict(padding="causal"),
                "'causal' exists for 1-D layers only), received padding='causal'",
            )
        )
    return cases


ND_BAD = [
    (cls, bad, message) for cls in LAYERS_ND for bad, message in _nd_bad_arguments(cls)
]


@pytest.mark.parametrize(
    "cls, bad, message",
    ND_BAD,
    ids=[f"{cls.__name__}-{message}" for cls, _, message in ND_BAD],
)
def test_nd_bad_arguments(cls, bad, message):
    with pytest.raises(ValueError) as info:
        cls(**{**LAYERS[cls], **bad})
    assert str(info.value).startswith(f"{cls.__name__}: ")
    assert message in str(info.value)


@pytest.mark.parametrize("cls", LAYERS_ND, ids=[c.__name__ for c in LAYERS_ND])
def test_nd_layers_refuse_an_input_of_another_rank(cls):
    wrong = (None, 9, 9, 9, 3) if cls.SPATIAL_DIMS == 1 else (None, 9, 3)
    layer = cls(**LAYERS[cls])
    with pytest.raises(ValueError) as info:
        layer.build(wrong)
    message = str(info.value)
    assert message.startswith(
        f"{cls.__name__}: input_shape must have {cls.SPATIAL_DIMS + 2} axes"
    )
    assert f"received input_shape={wrong!r}" in message


@pytest.mark.parametrize(
    "cls, rank, limit",
    [
        (fastconv.CPConv1D, 10, "must be at most 9"),
        (fastconv.CPConv3D, 82, "must be at most 81"),
        (fastconv.TuckerConv1D, (4, 2), "must be at most (C_in, filters) = (3, 4)"),
        (fastconv.TuckerConv3D, (2, 5), "must be at most (C_in, filters) = (3, 4)"),
    ],
)
def test_nd_ranks_above_the_shape_are_refused(cls, rank, limit):
    layer = cls(**{**LAYERS[cls], "rank": rank})
    with pytest.raises(ValueError) as info:
        layer.build(_example_shape(cls))
    message = str(info.value)
    assert message.startswith(f"{cls.__name__}: rank {limit}")
    assert f"received rank={layer.rank!r}" in message


@pytest.mark.parametrize(
    "cls, kwargs, input_shape", ND_CASES, ids=[c.__name__ for c, _, _ in ND_CASES]
)
def test_nd_layers_match_the_dense_convolution(cls, kwargs, input_shape):
    x = random_input(input_shape)
    for impl in cls.IMPLEMENTATIONS:
        layer = cls(**kwargs, implementation=impl)
        assert_matches_conv2d(layer, x)
    assert layer.cost(input_shape).params == sum(
        int(np.prod(w.shape)) for w in layer.trainable_weights
    )


@pytest.mark.parametrize(
    "cls, implementation",
    [(fastconv.CPConv1D, "fused"), (fastconv.TuckerConv3D, "matmul")],
)
def test_2d_only_implementations_are_refused_with_the_reason(cls, implementation):
    with pytest.raises(ValueError) as info:
        cls(**LAYERS[cls], implementation=implementation)
    assert f"{implementation!r} exists for the 2-D layer only" in str(info.value)
    assert f"received implementation={implementation!r}" in str(info.value)


def test_causal_1d_layers_see_no_later_position():
    x = random_input((1, 9, 3))
    later = x.copy()
    later[:, 5:] += 1.0
    for cls in (c for c in LAYERS_ND if c.SPATIAL_DIMS == 1):
        layer = cls(**LAYERS[cls], padding="causal")
        y, y_later = (to_numpy(layer(v)) for v in (x, later))
        np.testing.assert_allclose(y[:, :5], y_later[:, :5], rtol=1e-6)
        assert not np.allclose(y[:, 5:], y_later[:, 5:])


def test_factorized_conv3d_default_width_keeps_the_conv3d_parameters():
    layer = fastconv.FactorizedConv3D(64, 3, use_bias=False)
    assert layer.mid_channels(64) == 144
    assert layer.cost((4, 8, 8, 64)).params == 3 * 3 * 3 * 64 * 64
    assert fastconv.FactorizedConv3D(8, 3, mid_filters=5).mid_channels(64) == 5


def test_a_1x1x1_factorized_conv3d_is_refused():
    with pytest.raises(ValueError, match=r"kernel_size must be larger than 1x1x1"):
        fastconv.FactorizedConv3D(4, 1)
    assert fastconv.FactorizedConv3D(4, (1, 3, 3)).kernel_size == (1, 3, 3)
