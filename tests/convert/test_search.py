"""The rank search: `choose` on hand-made tables, and ``convert_model(data=...)``."""

import warnings

import keras
import numpy as np
import pytest

import fastconv
from fastconv.convert.search import Option, _predicted, choose, fastest
from tests.cli.checks import run


def option(layer, rank, drop, saved):
    return Option(layer, "cp", rank, rank, drop, 10.0, 10.0 - saved)


# A model of 100 s with two layers; each option: (rank, drop, seconds saved).
TABLE = [
    option("a", 1, 0.05, 40.0),
    option("a", 2, 0.01, 30.0),
    option("a", 3, 0.0, 5.0),
    option("b", 1, 0.04, 30.0),
    option("b", 2, 0.002, 20.0),
]


def ranks(picks):
    return {layer: None if o is None else o.rank for layer, o in picks.items()}


def test_target_speedup_takes_the_least_summed_drop():
    # 2x needs 50 s saved: a2+b2 (drop 0.012) beats a1+b2 and a2+b1.
    assert ranks(choose(TABLE, 100.0, target_speedup=2.0)) == {"a": 2, "b": 2}


def test_max_accuracy_drop_takes_the_largest_speedup_within_budget():
    assert ranks(choose(TABLE, 100.0, max_accuracy_drop=0.005)) == {"a": 3, "b": 2}
    assert ranks(choose(TABLE, 100.0, max_accuracy_drop=0.0)) == {"a": 3, "b": None}


def test_greedy_beyond_the_exhaustive_limit(monkeypatch):
    monkeypatch.setattr(fastconv.convert.search, "EXHAUSTIVE_LIMIT", 1)
    assert ranks(choose(TABLE, 100.0, max_accuracy_drop=0.005)) == {"a": 3, "b": 2}
    picks = choose(TABLE, 100.0, target_speedup=2.0)
    saved = sum(o.saved for o in picks.values() if o is not None)
    assert saved >= 50.0


def test_unreachable_target_names_the_best_prediction():
    with pytest.raises(ValueError, match=r"target_speedup=10.*3\.33x"):
        choose(TABLE, 100.0, target_speedup=10.0)


def test_layers_timed_alone_beyond_the_model_time_predict_their_own_ratio():
    # Two layers timed alone at 60 s each in a model measured at 100 s: their
    # savings are scaled to the model, so the prediction is their own ratio
    # (120 s -> 30 s: 4x), not an infinite speedup that meets any target.
    from fastconv.convert.search import _predicted

    picks = [
        Option("a", "cp", 1, 1, 0.0, 60.0, 15.0),
        Option("b", "cp", 1, 1, 0.0, 60.0, 15.0),
    ]
    speedup, _ = _predicted(100.0, picks)
    assert speedup == pytest.approx(4.0)
    with pytest.raises(ValueError, match=r"target_speedup=1000.*4\.00x"):
        choose(picks, 100.0, target_speedup=1000)


# ------------------------------------------------------------- end to end
def small_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = keras.layers.Conv2D(64, 3, padding="same", name="c2")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", name="c3")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


@pytest.fixture(scope="module")
def model_and_data():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    return small_model(), (rng.random((32, 8, 8, 3), "float32"), np.arange(32) % 3)


FAST = {"methods": ["cp"], "ranks": [0.1], "timing_repeats": 3, "progress": False}


def test_reachable_target_is_met_or_reported(model_and_data, monkeypatch):
    """With the times fixed (each replacement saves 80% of its layer's time),
    so that a loaded machine's noise cannot make the target unreachable."""
    from fastconv.convert import search as search_module

    def layer_times(old, new, shape, batch_size, repeats):
        return {"original": {"median_s": 1.0}, "replacement": {"median_s": 0.2}}, "x"

    def model_times(models, x, batch_size, repeats):
        fixed = {"new": 8.0, "fastest": 5.0}
        return {name: fixed.get(name, 10.0) for name in models}

    monkeypatch.setattr(search_module, "_time", layer_times)
    monkeypatch.setattr(search_module, "_model_times", model_times)
    model, data = model_and_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastconv.ConversionAccuracyWarning)
        new_model, report = fastconv.convert_model(
            model, data=data, target_speedup=1.05, **FAST
        )
    search = report.search
    assert search["predicted_speedup"] >= 1.05
    calibration = search["calibration"]
    assert calibration["fastest_speedup"] == pytest.approx(2.0)
    # The layers alone predicted less than the measured 2x: savings scaled up,
    # so that the prediction for the fastest model is what it measured.
    assert calibration["fastest_predicted"] < 2.0 and calibration["scale"] > 1
    options = [Option(**option) for option in search["options"]]
    calibrated, _ = _predicted(
        search["model_time_s"], fastest(options).values(), calibration["scale"]
    )
    assert calibrated == pytest.approx(2.0)
    assert search["achieved_speedup"] == pytest.approx(1.25)
    assert search["met"]
    assert 0 <= search["achieved_accuracy"] <= 1
    assert any(row.converted for row in report.rows)
    assert "predicted" in str(report) and "achieved" in str(report)
    assert "NOT met" in str(report) or search["met"]
    assert report.to_dict()["search"]["chosen"]
    assert new_model.output_shape == model.output_shape


def test_unreachable_target_raises(model_and_data):
    model, data = model_and_data
    with pytest.raises(ValueError, match=r"target_speedup=1000 cannot be reached"):
        fastconv.convert_model(model, data=data, target_speedup=1000, **FAST)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_speedup": 2.0, "max_accuracy_drop": 0.01}, "not both"),
        ({"target_speedup": 2.0}, r"needs data=\(x, y\)"),
        ({"max_accuracy_drop": 0.01}, r"needs data=\(x, y\)"),
        ({"data": (np.zeros((4, 9, 9, 3)), np.zeros(4))}, r"\(4, 9, 9, 3\).*8, 8, 3"),
        ({"target_speedup": 0.5, "data": "d"}, "above 1"),
        ({"data": "d", "methods": ["nope"]}, "methods"),
    ],
)
def test_bad_search_arguments_are_refused(model_and_data, kwargs, message):
    model, data = model_and_data
    if kwargs.get("data") == "d":
        kwargs = {**kwargs, "data": data}
    with pytest.raises(ValueError, match=message):
        fastconv.convert_model(model, progress=False, **kwargs)


# ------------------------------------------------------------------ warning
def test_warning_fires_on_a_tiny_rank_and_not_on_full_rank(model_and_data):
    model, data = model_and_data
    with pytest.warns(fastconv.ConversionAccuracyWarning, match="fastconv.finetune"):
        _, report = fastconv.convert_model(model, "tucker", (1, 1), progress=False)
    assert "rank=0.5" in report.advice
    with warnings.catch_warnings():
        warnings.simplefilter("error", fastconv.ConversionAccuracyWarning)
        _, report = fastconv.convert_model(
            model,
            "tucker",
            (8, 64),
            layers=["c2"],
            calibration_data=data[0],
            progress=False,
        )
    assert report.advice is None


# ---------------------------------------------------------------------- CLI
def test_cli_search_on_an_npz(tmp_path, capsys, model_and_data):
    model, (x, y) = model_and_data
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x=x, y=y)
    code, out, err = run(
        capsys,
        "convert",
        tmp_path / "m.keras",
        "--data",
        tmp_path / "d.npz",
        "--max-accuracy-drop",
        "1",
        "--no-progress",
        "-o",
        tmp_path / "fast.keras",
    )
    assert code == 0, err
    assert "achieved" in out and (tmp_path / "fast.keras").exists()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--target-speedup", "2"), "--data"),
        (("--max-accuracy-drop", "0.01"), "--data"),
        (
            ("--target-speedup", "2", "--max-accuracy-drop", "0.1", "--data", "mnist"),
            "--max-accuracy-drop",
        ),
        (("--target-speedup", "0.5", "--data", "mnist"), "--target-speedup"),
        (("--data", "nofile.npz", "--target-speedup", "2"), "--data"),
    ],
)
def test_cli_bad_search_flags_exit_2(tmp_path, capsys, model_and_data, flags, named):
    model, _ = model_and_data
    model.save(tmp_path / "m.keras")
    code, _, err = run(capsys, "convert", tmp_path / "m.keras", *flags)
    assert code == 2
    assert named in err and "Traceback" not in err
