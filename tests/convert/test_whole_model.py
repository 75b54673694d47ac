"""convert_model(min_speedup=...)'s whole-model check: timing the new model
whole and putting layers back until it is not slower than the original."""

import importlib

import keras
import numpy as np
import pytest

import fastconv
from fastconv.convert import whole_model
from fastconv.layers import BaseFastConv
from tests.layer_checks import random_input, to_numpy

# CP at rank 2 loses most of these random kernels; the check is about speed.
pytestmark = pytest.mark.filterwarnings(
    "ignore::fastconv.convert.ConversionAccuracyWarning"
)


def widening_model():
    """A stem and four convolutions of growing width: CP at rank 2 saves more
    multiply-adds in each than in the one before."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    for i, width in enumerate((6, 10, 16, 24)):
        x = keras.layers.Conv2D(width, 3, padding="same", name=f"c{i}")(x)
    return keras.Model(inputs, x)


def convert(model, **kwargs):
    kwargs = {
        "min_speedup": 0.01,
        "batch_size": 2,
        "timing_repeats": 2,
        "progress": False,
        **kwargs,
    }
    return fastconv.convert_model(model, "cp", 2, **kwargs)


def fast_names(model) -> set[str]:
    return {
        layer.name
        for layer in model._flatten_layers()
        if isinstance(layer, BaseFastConv)
    }


def scripted(monkeypatch, speedups):
    """Makes every layer measure 2x alone and the whole-model timings return
    ``speedups`` in turn; returns the fast layers counted at each timing."""
    calls = []
    module = importlib.import_module("fastconv.convert.convert_model")

    def per_layer(old, new, shape, batch_size, repeats):
        times = {"original": {"median_s": 2e-3}, "replacement": {"median_s": 1e-3}}
        return times, "scripted"

    monkeypatch.setattr(module, "_time", per_layer)

    def fake(original, new, inputs, *, repeats, jit):
        calls.append(len(fast_names(new)))
        return speedups[len(calls) - 1]

    monkeypatch.setattr(whole_model, "speedup", fake)
    return calls


def test_a_model_that_passes_is_timed_once_and_kept_whole():
    new_model, report = convert(widening_model())
    record = report.whole_model
    assert report.settings["verify_whole_model"] is True
    assert record["threshold"] == pytest.approx(0.01)
    assert [r["replaced"] for r in record["rounds"]] == [4]
    assert record["reverted"] == [] and record["replaced"] == 4
    assert record["speedup"] == record["rounds"][0]["speedup"] > 0
    assert len(fast_names(new_model)) == 4
    assert "whole-model check" in str(report)
    assert report.to_dict()["whole_model"] == record


def test_a_slow_model_loses_the_layers_that_save_least_first(monkeypatch):
    model = widening_model()
    x = random_input((2, 8, 8, 3), seed=3)
    before = [to_numpy(v).tobytes() for v in model.weights]
    calls = scripted(monkeypatch, [0.5, 0.9, 1.2])
    new_model, report = convert(model, min_speedup=1.05)
    # Per layer every CP replacement saves multiply-adds; the script decides.
    assert calls == [4, 2, 1]
    record = report.whole_model
    assert record["threshold"] == 1.0
    assert [r["speedup"] for r in record["rounds"]] == [0.5, 0.9, 1.2]
    # c0 and c1 save least and go first, then c2; c3 stays.
    assert record["reverted"] == ["c1", "c0", "c2"]
    assert record["replaced"] == 1 and record["speedup"] == 1.2
    assert fast_names(new_model) == {report["c3"].new_name}
    for name in ("c0", "c1", "c2"):
        row = report[name]
        assert not row.converted
        assert "reverted by the whole-model check" in row.decision
        assert row.speedup is not None  # its per-layer timing is kept
    assert "whole model 0.50x < 1x with 4 layers replaced" in report["c0"].decision
    assert "whole model 0.90x < 1x with 2 layers replaced" in report["c2"].decision
    assert report["c3"].converted
    # The user's model is untouched; the reverted layers are exact copies.
    assert [to_numpy(v).tobytes() for v in model.weights] == before
    for name in ("stem", "c0", "c1", "c2"):
        for old, new in zip(
            model.get_layer(name).weights,
            new_model.get_layer(name).weights,
            strict=True,
        ):
            np.testing.assert_array_equal(to_numpy(old), to_numpy(new))
    assert new_model(x).shape == model(x).shape


def test_a_model_still_slow_after_every_round_becomes_a_copy(monkeypatch):
    model = widening_model()
    x = random_input((2, 8, 8, 3), seed=4)
    calls = scripted(monkeypatch, [0.5] * whole_model.WHOLE_MODEL_ROUNDS)
    new_model, report = convert(model, min_speedup=1.1)
    assert calls == [4, 2, 1]  # a single layer left is the last to go
    record = report.whole_model
    assert record["replaced"] == 0 and record["speedup"] is None
    assert sorted(record["reverted"]) == ["c0", "c1", "c2", "c3"]
    assert not fast_names(new_model) and not report.converted
    np.testing.assert_array_equal(to_numpy(new_model(x)), to_numpy(model(x)))
    assert "every replacement put back" in str(report)


def test_the_rounds_are_bounded(monkeypatch):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    for i in range(16):
        x = keras.layers.Conv2D(8 + i, 3, padding="same", name=f"c{i}")(x)
    calls = scripted(monkeypatch, [0.5] * whole_model.WHOLE_MODEL_ROUNDS)
    _, report = convert(keras.Model(inputs, x), min_speedup=1.1, timing_repeats=1)
    assert calls == [16, 8, 4, 2]
    assert report.whole_model["replaced"] == 0
    assert len(report.whole_model["reverted"]) == 16


def test_it_can_be_turned_off_and_is_off_without_min_speedup(monkeypatch):
    calls = scripted(monkeypatch, [0.5])
    new_model, report = convert(widening_model(), verify_whole_model=False)
    assert calls == [] and report.whole_model is None
    assert len(fast_names(new_model)) == 4
    _, report = fastconv.convert_model(widening_model(), "cp", 2, progress=False)
    assert report.whole_model is None
    assert report.settings["verify_whole_model"] is False


@pytest.mark.parametrize(
    "value, error, match",
    [
        ("yes", TypeError, "verify_whole_model must be None, True or False, "
         "received verify_whole_model='yes'"),
        (True, ValueError, "verify_whole_model=True applies only with "
         "min_speedup.*received min_speedup=None"),
    ],
)  # fmt: skip
def test_bad_verify_whole_model(value, error, match):
    kwargs = {"min_speedup": 1.1} if value == "yes" else {}
    with pytest.raises(error, match=match):
        fastconv.convert_model(
            widening_model(), "cp", 2, verify_whole_model=value, **kwargs
        )


def test_example_inputs():
    model = widening_model()
    x = random_input((3, 8, 8, 3), seed=5)
    batch = whole_model.example_inputs(model, x, 5)
    assert batch.shape == (5, 8, 8, 3)
    np.testing.assert_array_equal(batch[:3], x)
    assert whole_model.example_inputs(model, None, 2).shape == (2, 8, 8, 3)
    inputs = keras.Input((None, None, 3))
    open_model = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))
    with pytest.raises(ValueError, match=r"input size.*\(None, None, None, 3\).*"
                       "pass calibration_data"):  # fmt: skip
        whole_model.example_inputs(open_model, None, 2)


def test_the_search_times_whole_models_as_the_check_does(monkeypatch):
    # One piece of code times whole models for both, compiled as the layers'
    # savings are timed (timing.default_jit), on the first batch of the data.
    from fastconv import timing
    from fastconv.convert import search

    seen = []

    def forward(model, inputs, *, jit):
        seen.append((model.name, np.shape(inputs), jit))
        return lambda: None

    monkeypatch.setattr(timing, "default_jit", lambda: "as-keras-runs")
    monkeypatch.setattr(timing, "make_forward", forward)
    model = widening_model()
    x = random_input((3, 8, 8, 3), seed=6)
    times = search._model_times({"original": model}, x, 5, repeats=1)
    assert set(times) == {"original"} and times["original"] >= 0
    assert seen == [(model.name, (5, 8, 8, 3), "as-keras-runs")]
