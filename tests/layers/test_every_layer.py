"""What every public ``BaseFastConv`` layer must do, checked on all of them.

``LAYERS`` holds one small valid configuration per layer; ``CASES`` the
configurations that go through ``check_layer`` (calls and output shape, one
training step, config, ``.keras`` and ``.weights.h5`` round trips, mixed
precision). A layer's own arguments and formulas are tested in its own file.
"""

import re

import numpy as np
import pytest

import fastconv
from tests.layer_checks import check_layer

pytestmark = pytest.mark.layers

LAYERS = {
    fastconv.BottleneckConv2D: dict(filters=4, kernel_size=3, bottleneck_filters=2),
    fastconv.CPConv2D: dict(filters=4, kernel_size=3, rank=2),
    fastconv.DepthwiseSeparableConv2D: dict(filters=4, kernel_size=3),
    fastconv.FactorizedConv2D: dict(filters=4, kernel_size=3, intermediate_filters=2),
    fastconv.StackedConv2D: dict(filters=4, kernel_size=5, intermediate_filters=2),
    fastconv.TuckerConv2D: dict(filters=4, kernel_size=3, rank=2),
    fastconv.WideConv2D: dict(filters=4, kernel_size=3, merged_layers=2),
}
LAYER_IDS = [cls.__name__ for cls in LAYERS]

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


@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
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
    layer.build((None, 9, 9, 3))
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
    cost = layer.cost((9, 10, 3))
    layer.build((None, 9, 10, 3))
    assert cost.params == sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
