import warnings

import keras
import numpy as np
import pytest

import fastconv
from fastconv.decomposition import RankClampedWarning, low_rank_decompose
from tests.layer_checks import random_input, relative_error, to_numpy


def _dense(units=12, features=16, **kwargs):
    layer = keras.layers.Dense(
        units, bias_initializer="random_normal", name="fc", **kwargs
    )
    layer.build((None, features))
    return layer


# ------------------------------------------------------------ decomposition
def test_low_rank_decompose_is_exact_at_full_rank_and_truncates_below():
    matrix = random_input((16, 12)).astype("float64")
    full = low_rank_decompose(matrix, 12)
    np.testing.assert_allclose(full.to_dense(), matrix, atol=1e-12)
    assert full.relative_error < 1e-12
    low = low_rank_decompose(matrix, 4)
    assert (low.kernel_in.shape, low.kernel_out.shape) == ((16, 4), (4, 12))
    singular = np.linalg.svd(matrix, compute_uv=False)
    tail = np.sqrt(np.sum(singular[4:] ** 2) / np.sum(singular**2))
    assert low.relative_error == pytest.approx(tail)


@pytest.mark.parametrize(
    "rank, expected",
    [(5, 5), (0.5, 3), ("energy:1.0", 12)],  # 0.5 * 16 * 12 / (16 + 12) = 3.4
)
def test_low_rank_decompose_rank_forms(rank, expected):
    assert low_rank_decompose(random_input((16, 12)), rank).rank == expected


def test_low_rank_decompose_vbmf_finds_a_planted_rank():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 30))
    matrix += 0.01 * rng.normal(size=matrix.shape)
    assert low_rank_decompose(matrix, "vbmf").rank == 3


def test_low_rank_decompose_keeps_huge_and_tiny_matrices_finite():
    matrix = random_input((16, 12)).astype("float64")
    for scale in (1e300, 1e-300):
        result = low_rank_decompose(matrix * scale, 12)
        assert all(np.all(np.isfinite(f)) for f in result.factors.values())
        assert result.relative_error < 1e-12


@pytest.mark.parametrize(
    "matrix, message",
    [
        (np.ones(3), "matrix must be 2-D"),
        (np.ones((2, 2, 2)), "matrix must be 2-D"),
        (np.full((2, 2), np.nan), "matrix must be finite"),
    ],
)
def test_low_rank_decompose_refuses_bad_matrices(matrix, message):
    with pytest.raises(ValueError, match=message):
        low_rank_decompose(matrix, 1)


# ------------------------------------------------------------------ decompose
def test_decompose_dense_is_exact_at_full_rank():
    dense = _dense(activation="relu")
    fast = fastconv.decompose(dense, "svd", rank=12)
    assert isinstance(fast, fastconv.LowRankDense)
    assert (fast.name, fast.units, fast.rank) == ("fc_svd", 12, 12)
    assert fast.activation is keras.activations.relu
    x = random_input((4, 3, 16))
    assert relative_error(to_numpy(fast(x)), to_numpy(dense(x))) < 1e-5


def test_decompose_dense_leaves_the_original_untouched():
    dense = _dense()
    before = [w.copy() for w in dense.get_weights()]
    fastconv.decompose(dense, "svd", rank=3)
    for weight, old in zip(dense.get_weights(), before, strict=True):
        np.testing.assert_array_equal(weight, old)


def test_decompose_dense_rank_forms_and_clamping():
    dense = _dense()
    assert fastconv.decompose(dense, "svd", rank=0.5).rank == 3
    assert fastconv.decompose(dense, "svd", rank="energy:1.0").rank == 12
    with pytest.warns(RankClampedWarning, match="layer 'fc'"):
        assert fastconv.decompose(dense, "svd", rank=30).rank == 12


def test_decompose_low_rank_dense_again_with_a_smaller_rank():
    first = fastconv.decompose(_dense(), "svd", rank=8)
    second = fastconv.decompose(first, "svd", rank=4, name="smaller")
    assert (second.name, second.rank) == ("smaller", 4)
    expected = low_rank_decompose(first.dense_kernel(), 4).to_dense()
    np.testing.assert_allclose(second.dense_kernel(), expected, atol=1e-5)


def test_decompose_dense_keeps_the_dtype_policy():
    dense = keras.layers.Dense(12, dtype="mixed_float16")
    dense.build((None, 16))
    fast = fastconv.decompose(dense, "svd", rank=4)
    assert fast.dtype_policy.name == "mixed_float16"
    assert fast.kernel_in.dtype == "float32"


def test_decompose_dense_near_the_float32_limit_gives_finite_factors():
    dense = _dense()
    kernel = np.full((16, 12), 3e38, "float32")
    dense.kernel.assign(kernel)
    fast = fastconv.decompose(dense, "svd", rank=1)
    assert all(np.all(np.isfinite(f)) for f in fast.get_factors().values())
    assert relative_error(fast.dense_kernel(), kernel) < 1e-5


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda d: fastconv.decompose(d, "tucker", rank=4),
            TypeError,
            "layer 'fc' is a Dense, not a keras.layers.Conv2D that method 'tucker' "
            "decomposes; a Dense layer takes method 'svd'",
        ),
        (
            lambda d: fastconv.decompose(d, "qr", rank=4),
            ValueError,
            "layer 'fc' is a Dense, whose method must be one of 'svd', received "
            "method='qr'",
        ),
        (
            lambda d: fastconv.decompose(d, "svd", rank=4, random_state=0),
            TypeError,
            "takes no option 'random_state'",
        ),
        (
            lambda d: fastconv.decompose(d, "svd", rank=4, max_error=0.1),
            ValueError,
            "max_error applies only to method='auto'",
        ),
        (
            lambda d: fastconv.decompose(d, "svd", rank=0),
            ValueError,
            "layer 'fc', method 'svd': rank must be",
        ),
    ],
)
def test_decompose_dense_refuses_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call(_dense())


def test_decompose_dense_refuses_unbuilt_and_non_finite_layers():
    with pytest.raises(ValueError, match="layer 'fc' is not built"):
        fastconv.decompose(keras.layers.Dense(4, name="fc"), "svd", rank=2)
    dense = _dense()
    dense.kernel.assign(np.full((16, 12), np.nan, "float32"))
    with pytest.raises(ValueError, match="NaN or Inf in its kernel"):
        fastconv.decompose(dense, "svd", rank=2)


def test_decompose_warns_with_the_layer_name_only_when_clamped():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RankClampedWarning)
        fastconv.decompose(_dense(), "svd", rank=12)


# -------------------------------------------------------------- convert_model
def _mlp():
    inputs = keras.Input((3, 16))
    x = keras.layers.Conv1D(16, 1, name="mix")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(24, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(12, activation="relu", name="fc2")(x)
    outputs = keras.layers.Dense(10, name="head")(x)
    return keras.Model(inputs, outputs)


def _cnn():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="c1")(inputs)
    x = keras.layers.Conv2D(8, 3, name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(12, name="fc")(x)
    outputs = keras.layers.Dense(4, name="head")(x)
    return keras.Model(inputs, outputs)


def _decisions(report):
    return {row.name: row.decision for row in report.rows}


def test_convert_model_leaves_dense_layers_alone_by_default():
    _, report = fastconv.convert_model(_cnn(), "tucker", rank=4)
    assert [row.name for row in report.rows] == ["c1", "c2"]


def test_convert_model_converts_dense_layers_but_the_classifier():
    model = _mlp()
    before = [w.copy() for w in model.get_weights()]
    x = random_input((4, 3, 16))
    new_model, report = fastconv.convert_model(
        model, rank="energy:1.0", layer_types=("dense",), calibration_data=x
    )
    assert _decisions(report) == {
        "fc1": "converted",
        "fc2": "converted",
        "head": "kept: the last Dense layer (the classifier)",
    }
    rows = {row.name: row for row in report.rows}
    assert (rows["fc1"].method, rows["fc1"].rank) == ("svd", 24)
    assert rows["fc1"].new_type == "LowRankDense"
    assert rows["fc1"].macs_after == 48 * 24 + 24 * 24
    assert report.output_error[0] < 1e-5
    assert "2 of 3 Dense layers converted" in str(report)
    assert isinstance(new_model.get_layer("fc1_svd"), fastconv.LowRankDense)
    assert isinstance(model.get_layer("fc1"), keras.layers.Dense)
    for weight, old in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(weight, old)
    np.testing.assert_allclose(
        to_numpy(new_model(x)), to_numpy(model(x)), rtol=1e-4, atol=1e-5
    )


def test_convert_model_converts_both_types_with_svd_for_dense():
    _, report = fastconv.convert_model(
        _cnn(), "tucker", rank=4, layer_types=("conv", "dense")
    )
    rows = {row.name: row for row in report.rows}
    assert rows["c2"].method == "tucker"
    assert (rows["fc"].method, rows["fc"].rank) == ("svd", 4)
    assert rows["head"].decision == "kept: the last Dense layer (the classifier)"
    assert report.settings["layer_types"] == ("conv", "dense")
    assert " layers converted" in str(report).splitlines()[0]


def test_convert_model_layers_and_overrides_can_name_dense_layers():
    _, report = fastconv.convert_model(
        _mlp(),
        rank=4,
        layers=["head"],
        overrides={"fc2": {"rank": 2}},
        layer_types=("dense",),
    )
    rows = {row.name: row for row in report.rows}
    assert (rows["head"].decision, rows["head"].rank) == ("converted", 4)
    assert (rows["fc2"].decision, rows["fc2"].rank) == ("converted", 2)
    assert rows["fc1"].decision == "kept: not selected"


def test_convert_model_min_speedup_applies_to_dense_layers():
    _, report = fastconv.convert_model(
        _mlp(),
        rank=2,
        layer_types=("dense",),
        min_speedup=1e6,
        timing_repeats=1,
        batch_size=2,
    )
    rows = {row.name: row for row in report.rows}
    assert rows["fc1"].decision.startswith("kept: ")
    assert "(matmul) < min_speedup 1000000.0x" in rows["fc1"].decision
    assert rows["fc1"].time_before is not None


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(layer_types=("dense", "lstm")), ValueError, "layer_types=\\('dense'"),
        (dict(layer_types="dense"), ValueError, "received layer_types='dense'"),
        (dict(layer_types=()), ValueError, "received layer_types=\\(\\)"),
        (
            dict(layer_types=("dense", "dense")),
            ValueError,
            "layer_types must be a non-empty tuple of distinct values",
        ),
        (
            dict(layers=["fc"]),
            TypeError,
            "layers names 'fc', a Dense; pass layer_types=\\('conv', 'dense'\\)",
        ),
        (
            dict(overrides={"fc": {"rank": 2}}),
            ValueError,
            "overrides names 'fc', a Dense; pass layer_types",
        ),
        (
            dict(layer_types=("dense",), overrides={"fc": {"method": "cp"}}),
            TypeError,
            "layer 'fc' is a Dense, not a keras.layers.Conv2D that method 'cp'",
        ),
    ],
)
def test_convert_model_refuses_bad_dense_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        fastconv.convert_model(_cnn(), **kwargs)


def test_convert_model_search_tries_dense_layers_with_svd():
    model = _mlp()
    x = random_input((16, 3, 16))
    labels = np.argmax(to_numpy(model(x)), axis=-1)
    _, report = fastconv.convert_model(
        model,
        data=(x, labels),
        max_accuracy_drop=0.0,
        ranks=[2, "energy:1.0"],
        layer_types=("dense",),
        timing_repeats=1,
        batch_size=8,
    )
    tried = {
        (o["layer"], o["method"], o["resolved_rank"]) for o in report.search["options"]
    }
    assert tried == {
        ("fc1", "svd", 2),
        ("fc1", "svd", 24),
        ("fc2", "svd", 2),
        ("fc2", "svd", 12),
    }
    assert report["head"].decision == "kept: the last Dense layer (the classifier)"


# ---------------------------------------------------------------- sensitivity
def test_sensitivity_measures_dense_layers_when_asked():
    model = _mlp()
    x = random_input((16, 3, 16))
    labels = np.argmax(to_numpy(model(x)), axis=-1)
    result = fastconv.sensitivity(
        model,
        (x, labels),
        ranks=[2, "energy:1.0"],
        layer_types=("dense",),
        measure_speed=False,
        progress=False,
    )
    assert [(row.layer, row.resolved_rank) for row in result.rows] == [
        ("fc1", 2),
        ("fc1", 24),
        ("fc2", 2),
        ("fc2", 12),
    ]
    assert result.rows[1].accuracy_drop == 0.0
    assert result.skipped == {"head": "kept: the last Dense layer (the classifier)"}
    assert result.settings["layer_types"] == ["dense"]
    with pytest.raises(ValueError, match="sensitivity: layer_types must be"):
        fastconv.sensitivity(model, (x, labels), layer_types=("mlp",))
