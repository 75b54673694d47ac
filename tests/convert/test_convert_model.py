"""fastconv.convert_model: whole models, their graphs, selection and the report."""

import json
import re

import keras
import numpy as np
import pytest

import fastconv
from fastconv import _keras_graph
from fastconv.convert import ConversionResult
from fastconv.layers import BaseFastConv
from tests.layer_checks import random_input, relative_error, to_numpy

FULL = (8, 8)  # Tucker full rank of the 8 -> 8 convs below: exact conversions.


def randomize(model, seed=0):
    """Random weights everywhere (positive variances), so copies are checked."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        value = rng.standard_normal(variable.shape).astype(variable.dtype) * 0.3
        if "variance" in variable.path:
            value = np.abs(value) + 0.5
        variable.assign(value)
    return model


def snapshot(model) -> list[bytes]:
    return [to_numpy(v).tobytes() for v in model.weights]


def residual_model():
    """Stem conv, a conv, a nested Functional block on a residual branch, a
    conv shared by two calls, and a Dense head."""
    block_in = keras.Input((12, 12, 8))
    h = keras.layers.Conv2D(8, 3, padding="same", name="inner1")(block_in)
    h = keras.layers.BatchNormalization(name="inner_bn")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2D(8, 3, padding="same", name="inner2")(h)
    block = keras.Model(block_in, h, name="block")

    inputs = keras.Input((12, 12, 3))
    stem = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")
    x = stem(inputs)
    y = keras.layers.Conv2D(8, 3, padding="same", name="b1")(x)
    x = keras.layers.Add()([x, block(y)])
    shared = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="shared")
    x = shared(shared(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5, name="head")(x)
    model = keras.Model(inputs, outputs, name="residual")
    model.compile(optimizer="adam", loss="mse")
    return randomize(model)


@pytest.fixture(scope="module")
def x():
    return random_input((6, 12, 12, 3), seed=1)


def fast_layers(model) -> dict:
    found = {}
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, BaseFastConv):
            found[layer.name] = layer
    return found


# ---------------------------------------------------------------- graphs
def test_functional_with_residual_nested_and_shared_layers(x, tmp_path):
    model = residual_model()
    before = snapshot(model)
    y_before = to_numpy(model(x))

    result = fastconv.convert_model(model, "tucker", rank=FULL, progress=False)
    new_model, report = result
    assert isinstance(result, ConversionResult) and result.model is new_model

    assert snapshot(model) == before  # the original is untouched, bit for bit
    np.testing.assert_array_equal(to_numpy(model(x)), y_before)

    assert sorted(fast_layers(new_model)) == [
        "b1_tucker",
        "inner1_tucker",
        "inner2_tucker",
        "shared_tucker",
    ]
    assert new_model.get_layer("stem").__class__ is keras.layers.Conv2D
    shared = new_model.get_layer("shared_tucker")
    assert len(_keras_graph.inbound_nodes(shared)) == 2  # converted once, still shared
    assert relative_error(to_numpy(new_model(x)), y_before) < 1e-4

    rows = {row.full_name: row for row in report.rows}
    assert list(rows) == ["stem", "b1", "block/inner1", "block/inner2", "shared"]
    assert rows["shared"].calls == 2
    assert not rows["stem"].converted
    assert all(rows[name].converted for name in list(rows)[1:])

    path = tmp_path / "converted.keras"
    new_model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects
    np.testing.assert_array_equal(to_numpy(loaded(x)), to_numpy(new_model(x)))
    assert sorted(fast_layers(loaded)) == sorted(fast_layers(new_model))


def test_kept_layers_keep_their_weights_exactly():
    model = residual_model()
    new_model, _ = fastconv.convert_model(model, "cp", rank=3, progress=False)
    old = {layer.name: layer for layer in model._flatten_layers(include_self=False)}
    checked = 0
    for layer in new_model._flatten_layers(include_self=False):
        if layer.name in old and not isinstance(layer, keras.Model) and layer.weights:
            pairs = zip(layer.get_weights(), old[layer.name].get_weights(), strict=True)
            assert all(a.tobytes() == b.tobytes() for a, b in pairs), layer.name
            checked += 1
    assert checked == 3  # stem, inner_bn (with its moving statistics), head


def test_converted_layers_keep_their_bias_exactly():
    model = residual_model()
    new_model, _ = fastconv.convert_model(model, "factorized", rank=4, progress=False)
    old = to_numpy(model.get_layer("b1").bias)
    assert (
        to_numpy(new_model.get_layer("b1_factorized").bias).tobytes() == old.tobytes()
    )


def test_sequential_model_with_a_nested_sequential(x):
    inner = keras.Sequential(
        [keras.layers.Conv2D(8, 3, padding="same", name="n1")], name="inner"
    )
    model = keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            keras.layers.Conv2D(8, 3, padding="same", name="s1"),
            keras.layers.Conv2D(8, 3, padding="same", name="s2"),
            inner,
            keras.layers.Flatten(),
        ]
    )
    randomize(model)
    before = snapshot(model)
    new_model, report = fastconv.convert_model(
        model, "tucker", rank=FULL, progress=False
    )
    assert isinstance(new_model, keras.Sequential)
    assert snapshot(model) == before
    assert sorted(fast_layers(new_model)) == ["n1_tucker", "s2_tucker"]
    assert [row.full_name for row in report.converted] == ["s2", "inner/n1"]
    assert relative_error(to_numpy(new_model(x)), to_numpy(model(x))) < 1e-4


def test_multiple_inputs_and_outputs(tmp_path):
    a, b = keras.Input((10, 10, 2), name="a"), keras.Input((10, 10, 3), name="b")
    ca = keras.layers.Conv2D(6, 3, padding="same", name="ca")(a)
    cb = keras.layers.Conv2D(6, 3, padding="same", name="cb")(b)
    merged = keras.layers.Concatenate()([ca, cb])
    top = keras.layers.Conv2D(6, 3, strides=2, name="top")(merged)
    side = keras.layers.Conv2D(4, (1, 3), name="side")(cb)
    model = keras.Model({"a": a, "b": b}, {"top": top, "side": side})
    randomize(model)
    data = {"a": random_input((5, 10, 10, 2)), "b": random_input((5, 10, 10, 3), 1)}
    new_model, report = fastconv.convert_model(
        model,
        "tucker",
        rank=(12, 6),
        calibration_data=data,
        batch_size=2,
        overrides={"side": {"rank": (6, 4)}},
        progress=False,
    )
    # ca and cb are both first convolutions (one per input).
    assert [row.name for row in report.converted] == ["top", "side"]
    assert report["top"].output_error < 1e-5
    assert len(report.output_error) == 2 and max(report.output_error) < 1e-5
    got, want = new_model(data), model(data)
    for key in ("top", "side"):
        assert relative_error(to_numpy(got[key]), to_numpy(want[key])) < 1e-4
    new_model.save(tmp_path / "multi.keras")
    loaded = keras.models.load_model(tmp_path / "multi.keras")
    np.testing.assert_array_equal(to_numpy(loaded(data)["top"]), to_numpy(got["top"]))


def test_unknown_spatial_sizes_come_from_the_calibration_batch():
    inputs = keras.Input((None, None, 3))
    h = keras.layers.Conv2D(8, 3, name="c1")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(8, 3, name="c2")(h))
    _, report = fastconv.convert_model(model, "tucker", rank=4, progress=False)
    assert report["c2"].macs_before is None and report["c2"].params_after is not None
    _, report = fastconv.convert_model(
        model,
        "tucker",
        rank=4,
        calibration_data=random_input((2, 9, 9, 3)),
        progress=False,
    )
    assert report["c2"].input_shape == (None, 7, 7, 8)
    assert report["c2"].macs_before == 5 * 5 * 9 * 8 * 8
    with pytest.raises(ValueError, match="min_speedup needs the input size.*'c2'"):
        fastconv.convert_model(model, "tucker", rank=4, min_speedup=1.0, progress=False)


# ------------------------------------------------------------- selection
def test_skip_first():
    model = residual_model()
    _, report = fastconv.convert_model(model, "tucker", rank=4, progress=False)
    assert report["stem"].decision == "kept: first convolution (skip_first=True)"
    _, report = fastconv.convert_model(
        model, "tucker", rank=4, skip_first=False, progress=False
    )
    assert report["stem"].converted


def test_selection_by_regex_predicate_and_names():
    model = residual_model()
    _, report = fastconv.convert_model(
        model, "tucker", 4, layers=r"inner\d", progress=False
    )
    assert [row.name for row in report.converted] == ["inner1", "inner2"]
    _, report = fastconv.convert_model(
        model, "tucker", 4, layers=re.compile("block/.*2"), progress=False
    )
    assert [row.name for row in report.converted] == ["inner2"]
    _, report = fastconv.convert_model(
        model,
        "tucker",
        4,
        layers=lambda layer: layer.name.startswith("sh"),
        progress=False,
    )
    assert [row.name for row in report.converted] == ["shared"]
    _, report = fastconv.convert_model(
        model, "tucker", 4, layers=["b1", "block/inner1"], progress=False
    )
    assert [row.name for row in report.converted] == ["b1", "inner1"]
    assert report["inner2"].decision == "kept: not selected"
    with pytest.warns(UserWarning, match="'stem', the first convolution"):
        fastconv.convert_model(model, "tucker", 4, layers=["stem"], progress=False)


def test_overrides():
    model = residual_model()
    new_model, report = fastconv.convert_model(
        model,
        "tucker",
        4,
        overrides={
            "b1": {"method": "cp", "rank": 5, "random_state": 0},
            "stem": {"method": "separable", "rank": 2},
        },
        progress=False,
    )
    assert report["b1"].method == "cp" and report["b1"].rank == 5
    assert report["stem"].converted and report["stem"].new_type == (
        "DepthwiseSeparableConv2D"
    )
    assert report["inner1"].method == "tucker" and report["inner1"].rank == (4, 4)
    assert type(new_model.get_layer("b1_cp")) is fastconv.CPConv2D


def test_a_fastconv_layer_can_be_re_decomposed():
    model = residual_model()
    first, _ = fastconv.convert_model(model, "tucker", FULL, progress=False)
    second, report = fastconv.convert_model(
        first, "tucker", (2, 2), layers=["b1_tucker"], progress=False
    )
    assert report["b1_tucker"].rank == (2, 2)
    assert second.get_layer("b1_tucker_tucker").rank == (2, 2)
    # by default only keras Conv2D layers are chosen
    _, report = fastconv.convert_model(first, "tucker", 2, progress=False)
    assert not report.converted


def test_grouped_and_1x1_convs_are_kept_by_default_with_a_reason():
    inputs = keras.Input((8, 8, 4))
    h = keras.layers.Conv2D(4, 3, name="first")(inputs)
    h = keras.layers.Conv2D(4, 3, groups=2, name="grouped")(h)
    h = keras.layers.Conv2D(4, 1, name="pointwise")(h)
    model = keras.Model(inputs, h)
    _, report = fastconv.convert_model(model, "cp", 2, progress=False)
    assert "groups=2" in report["grouped"].decision
    assert "1x1 kernel" in report["pointwise"].decision
    with pytest.raises(ValueError, match="'grouped' has groups=2"):
        fastconv.convert_model(model, "tucker", 2, layers=["grouped"], progress=False)


def test_min_speedup_keeps_a_replacement_with_no_fewer_macs_untimed():
    # Tucker at full rank on an 8 -> 8 3x3 conv adds two 1x1 convolutions:
    # more multiply-adds, so it is kept without timing (timing is noise here).
    inputs = keras.Input((8, 8, 8))
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", name="c2")(x)
    model = keras.Model(inputs, x)
    _, report = fastconv.convert_model(
        model, "tucker", (8, 8), min_speedup=1.1, batch_size=2, progress=False
    )
    row = report["c2"]
    assert row.macs_after >= row.macs_before
    assert not row.converted and "no fewer multiply-adds" in row.decision
    assert row.time_before is None and row.speedup is None


def test_min_speedup_records_times_and_converts_nothing_when_out_of_reach():
    model = residual_model()
    new_model, report = fastconv.convert_model(
        model,
        "cp",
        2,
        min_speedup=1000,
        batch_size=4,
        timing_repeats=2,
        layers=["b1", "shared"],
        progress=False,
    )
    assert not fast_layers(new_model)
    for name in ("b1", "shared"):
        row = report[name]
        assert not row.converted and row.decision.startswith("kept: ")
        # Timed at its fastest implementation, as "auto" would measure it.
        implementation = row.decision.split("(")[1].split(")")[0]
        assert implementation in fastconv.CPConv2D.IMPLEMENTATIONS
        assert len(row.time_before["samples_ns"]) == 2
        assert row.speedup == pytest.approx(
            row.time_before["median_s"] / row.time_after["median_s"]
        )
    assert "speedup" in str(report) and "interleaved" in str(report)


# ---------------------------------------------------------------- report
def test_report_table_dict_and_json(x, tmp_path):
    model = residual_model()
    _, report = fastconv.convert_model(
        model, "tucker", FULL, calibration_data=x, batch_size=4, progress=False
    )
    text = str(report)
    assert "4 of 5 convolutions converted" in text
    for name in ("stem", "b1", "block/inner1", "shared (x2)", "kept: first"):
        assert name in text
    assert "output err" in text and "model output relative error" in text
    row = report["b1"]
    assert row.params_before == 3 * 3 * 8 * 8 + 8
    assert row.macs_before == 12 * 12 * 3 * 3 * 8 * 8
    assert row.params_after == 8 * 8 + 9 * 64 + 8 * 8 + 8
    assert row.kernel_error < 1e-6 and row.output_error < 1e-5
    data = report.to_dict()
    assert data["layers"][1]["rank"] == [8, 8]
    path = tmp_path / "report.json"
    report.to_json(path)
    loaded = json.loads(path.read_text())
    assert loaded == json.loads(json.dumps(data, default=str))
    assert loaded["environment"]["backend"] == keras.backend.backend()
    with pytest.raises(KeyError, match="no convolution named 'nope'"):
        report["nope"]


def test_progress_bar(capsys):
    fastconv.convert_model(residual_model(), "tucker", 2, progress=True)
    assert "convert_model" in capsys.readouterr().err


def test_auto_method_in_a_model():
    _, report = fastconv.convert_model(
        residual_model(), "auto", 0.5, max_error=10.0, progress=False
    )
    for row in report.converted:
        assert row.method == min(row.candidates, key=lambda c: c["macs"])["method"]


# ---------------------------------------------------------------- errors
def test_not_a_model():
    with pytest.raises(TypeError, match="must be a keras.Model.*Conv2D"):
        fastconv.convert_model(keras.layers.Conv2D(2, 3))


def test_unbuilt_model():
    model = keras.Sequential([keras.layers.Conv2D(2, 3)], name="lazy")
    with pytest.raises(ValueError, match="'lazy' is not built"):
        fastconv.convert_model(model)


def test_subclassed_model_suggests_decompose():
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.conv = keras.layers.Conv2D(2, 3)

        def call(self, inputs):
            return self.conv(inputs)

    net = Net()
    net(np.zeros((1, 6, 6, 2), "float32"))
    with pytest.raises(ValueError, match="subclassed.*cannot be cloned.*decompose"):
        fastconv.convert_model(net)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"method": "svd"}, ValueError, "method must be one of .*'svd'"),
        ({"rank": "eight"}, ValueError, "layer 'b1'.*rank='eight'"),
        ({"min_speedup": 0}, ValueError, "min_speedup must be"),
        ({"batch_size": 0}, ValueError, "batch_size must be"),
        ({"skip_first": "yes"}, TypeError, "skip_first must be a bool"),
        ({"layers": 3}, TypeError, "layers must be None"),
        ({"layers": ["nope"]}, ValueError, "names 'nope'.*'b1'"),
        ({"layers": ["head"]}, TypeError, "'head', a Dense"),
        ({"layers": "xyz.*"}, ValueError, "matches no convolution"),
        ({"overrides": {"nope": {}}}, ValueError, "overrides names 'nope'"),
        ({"overrides": {"b1": "cp"}}, TypeError, r"overrides\['b1'\] must be a dict"),
        ({"overrides": {"b1": {"method": "x"}}}, ValueError, "method must be one of"),
        ({"bogus": 1}, TypeError, "no option 'bogus'"),
        ({"progress": "yes"}, TypeError, "progress must be"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        fastconv.convert_model(residual_model(), **{"progress": False, **kwargs})
