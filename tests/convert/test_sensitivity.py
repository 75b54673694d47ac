"""fastconv.sensitivity: one layer converted at a time, per rank."""

import json
import math

import keras
import numpy as np
import pytest

import fastconv
from fastconv.convert.sensitivity import SensitivityResult

RANKS = ((2, 2), 0.5, (8, 8))  # (8, 8): full-rank Tucker, an exact conversion


def small_model() -> keras.Model:
    """Three 3x3 convolutions of 8 channels; the first one is skipped."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="c3")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs)


def small_data(n=40):
    rng = np.random.default_rng(1)
    return rng.random((n, 8, 8, 3), dtype="float32"), np.arange(n) % 3


@pytest.fixture(scope="module")
def model():
    return small_model()


@pytest.fixture(scope="module")
def measured(model):
    weights = [w.copy() for w in model.get_weights()]
    result = fastconv.sensitivity(
        model,
        small_data(),
        method="tucker",
        ranks=RANKS,
        batch_size=8,
        timing_repeats=2,
        progress=False,
    )
    return result, weights


def test_one_row_per_layer_and_rank_in_order(measured):
    result, _ = measured
    assert isinstance(result, SensitivityResult)
    assert result.layers == ["c2", "c3"]
    assert [(row.layer, row.rank) for row in result.rows] == [
        (layer, rank) for layer in ("c2", "c3") for rank in RANKS
    ]
    assert set(result.skipped) == {"c1"}
    assert "first convolution" in result.skipped["c1"]
    assert result.examples == 40 and result.method == "tucker"


def test_the_original_model_is_unchanged(model, measured):
    _, weights = measured
    after = model.get_weights()
    assert len(after) == len(weights)
    for before, now in zip(weights, after, strict=True):
        np.testing.assert_array_equal(before, now)
    assert all(not isinstance(layer, fastconv.TuckerConv2D) for layer in model.layers)


def test_accuracies_and_drops(model, measured):
    result, _ = measured
    x, y = small_data()
    expected = float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))
    assert result.original_accuracy == expected
    for row in result.rows:
        assert 0.0 <= row.accuracy <= 1.0
        assert row.accuracy_drop == result.original_accuracy - row.accuracy


def test_an_exact_conversion_drops_nothing(measured):
    result, _ = measured
    full = [row for row in result.rows if row.rank == (8, 8)]
    assert len(full) == 2
    for row in full:
        assert tuple(row.resolved_rank) == (8, 8)
        assert row.accuracy_drop == pytest.approx(0.0, abs=1e-9)


def test_ranks_resolve_to_smaller_layers(measured):
    result, _ = measured
    for row in result.rows:
        if row.rank == (2, 2):
            assert tuple(row.resolved_rank) == (2, 2)
            assert row.params < row.params_before
            assert row.macs < row.macs_before


def test_speedups_are_measured(measured):
    result, _ = measured
    for row in result.rows:
        assert math.isfinite(row.speedup) and row.speedup > 0
        low, high = row.interval
        assert 0 < low <= row.speedup <= high
        assert row.implementation


def test_table_has_a_line_per_row(measured):
    result, _ = measured
    lines = result.table().splitlines()
    assert lines[0].startswith("| layer | rank |")
    assert len(lines) == 2 + len(result.rows)
    assert "| c3 | 8,8 | 8,8 |" in lines[-1]
    assert result.table() in str(result)


def test_json_round_trip(tmp_path, measured):
    result, _ = measured
    path = tmp_path / "sensitivity.json"
    text = result.to_json(path)
    assert json.loads(path.read_text()) == json.loads(text)
    assert SensitivityResult.from_json(path) == result


def test_plot_is_written(tmp_path, measured):
    result, _ = measured
    path = tmp_path / "sensitivity.png"
    result.plot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_timing_cp_and_chosen_layers(tmp_path, model):
    result = fastconv.sensitivity(
        model,
        small_data(16),
        ranks=[0.25],
        layers=["c3"],
        measure_speed=False,
        progress=False,
        random_state=0,
    )
    assert result.method == "cp"
    (row,) = result.rows
    assert row.layer == "c3" and row.speedup is None and row.interval is None
    assert result.skipped["c2"] == "not in layers"
    assert "| - | - |" in result.table()
    result.plot(tmp_path / "macs.png")
    assert (tmp_path / "macs.png").stat().st_size > 0


def test_one_hot_labels_give_the_same_accuracy(model):
    x, y = small_data(16)
    settings = dict(method="tucker", ranks=[(8, 8)], measure_speed=False)
    by_label = fastconv.sensitivity(model, (x, y), progress=False, **settings)
    one_hot = fastconv.sensitivity(model, (x, np.eye(3)[y]), progress=False, **settings)
    assert by_label.original_accuracy == one_hot.original_accuracy
    assert [r.accuracy for r in by_label.rows] == [r.accuracy for r in one_hot.rows]


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"method": "svd"}, "method='svd'"),
        ({"ranks": []}, "ranks=[]"),
        ({"ranks": 0.25}, "ranks=0.25"),
        ({"ranks": [0]}, "ranks=[0]"),
        ({"ranks": [1.5]}, "ranks=[1.5]"),
        ({"ranks": [(2, 0)]}, "ranks=[(2, 0)]"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"timing_repeats": 1.5}, "timing_repeats=1.5"),
        ({"measure_speed": "yes"}, "measure_speed='yes'"),
        ({"layers": ["nope"]}, "'nope'"),
        ({"layers": ["c1"]}, "first convolution"),
        ({"layers": "c2"}, "layers='c2'"),
        ({"progress": "yes"}, "progress='yes'"),
    ],
)
def test_bad_arguments_are_named(model, kwargs, named):
    with pytest.raises(ValueError, match="sensitivity") as info:
        fastconv.sensitivity(model, small_data(8), **kwargs)
    assert named in str(info.value)


def _nan_x():
    x, y = small_data(8)
    x[3, 0, 0, 0] = np.nan
    return x, y


@pytest.mark.parametrize(
    "data, words",
    [
        (small_data(8)[0], "pair (x, y)"),
        ((np.zeros((0, 8, 8, 3), "float32"), np.zeros(0)), "no examples"),
        ((small_data(8)[0], np.zeros(7)), "as many examples"),
        ((np.zeros((8, 9, 9, 3), "float32"), np.zeros(8)), "takes (N, 8, 8, 3)"),
        ((np.zeros((8, 8, 8), "float32"), np.zeros(8)), "takes (N, 8, 8, 3)"),
        (_nan_x(), "NaN"),
        ((small_data(8)[0], np.full(8, np.nan)), "NaN"),
        ((small_data(8)[0], np.full(8, 3)), "3 classes"),
        ((small_data(8)[0], np.full(8, 0.5)), "class labels"),
        ((small_data(8)[0], np.array(["a"] * 8)), "numbers"),
    ],
)
def test_bad_data_is_refused(model, data, words):
    with pytest.raises(ValueError, match="sensitivity") as info:
        fastconv.sensitivity(model, data, measure_speed=False)
    assert words in str(info.value)


def test_a_model_with_nothing_to_convert_is_refused():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="only")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(ValueError, match="no convolution to convert"):
        fastconv.sensitivity(model, (np.zeros((2, 8, 8, 3)), np.zeros(2)))


def test_fastconv_sensitivity_is_the_function():
    assert callable(fastconv.sensitivity)
    assert fastconv.sensitivity is fastconv.convert.sensitivity


def test_timing_repeats_without_measuring_speed_is_refused_naming_both():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="c")(inputs))
    before = [w.copy() for w in model.get_weights()]
    data = (np.ones((2, 8, 8, 3), "float32"), np.zeros((2, 6, 6, 4), "float32"))
    with pytest.raises(
        ValueError, match=r"timing_repeats=5 does not apply with measure_speed=False"
    ):
        fastconv.sensitivity(
            model, data, ranks=(0.5,), measure_speed=False, timing_repeats=5
        )
    for old, now in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, now)
