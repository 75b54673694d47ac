"""The suggest step, train-mode rows of the fastconv layers, and ``fastconv profile``.

Every measurement is one round with no warm-up: these tests check what is
reported (which rows, which counts, which sentences, which files), never how
fast anything is.
"""

import json

import keras
import pytest

import fastconv
from fastconv.cli import main
from fastconv.convert import (
    DEFAULT_CANDIDATES,
    Candidate,
    Suggestion,
    candidate_layer,
    suggest_replacements,
)
from fastconv.cost import layer_cost
from fastconv.profile import load_json, profile
from fastconv.timing import Timing

L = keras.layers
FAST = dict(warmup=0, repeats=1, jit=False)


def two_conv_model():
    return keras.Sequential(
        [
            keras.Input((10, 10, 1)),
            L.Conv2D(8, 3, activation="relu", name="conv1"),
            L.Conv2D(16, 3, activation="relu", name="conv2"),
            L.GlobalAveragePooling2D(name="gap"),
            L.Dense(3, name="dense"),
        ],
        name="two_conv",
    )


@pytest.fixture(scope="module")
def result():
    return profile(two_conv_model(), batch_size=2, **FAST)


def test_one_suggestion_per_conv2d_with_counts_of_each_candidate(result):
    suggestions = suggest_replacements(result)
    assert [s.path for s in suggestions] == ["conv1", "conv2"]
    conv2 = suggestions[1]
    assert conv2.description == "Conv2D 8->16, 3x3"
    assert conv2.input_shape == (2, 8, 8, 8)
    # Conv2D(16, 3x3) on 8x8x8, valid padding: 6 * 6 * 16 outputs, 72 MACs each.
    assert (conv2.params, conv2.macs_per_example) == (9 * 8 * 16 + 16, 36 * 16 * 72)
    assert [c.label.split("(")[0] for c in conv2.candidates] == list(DEFAULT_CANDIDATES)
    conv = result.layers[1].layer
    for candidate in conv2.candidates:
        assert candidate.error == "", candidate.error
        _, layer = candidate_layer(candidate.label.split("(")[0], conv, (2, 8, 8, 8))
        cost = layer_cost(layer, (2, 8, 8, 8))
        assert (candidate.params, candidate.macs_per_example) == (
            cost.params,
            cost.macs,
        )
        assert candidate.macs_ratio == pytest.approx(conv2.macs_per_example / cost.macs)
        assert candidate.timing is None and candidate.speedup is None
    # Not measured: the best is the one with the fewest multiply-adds.
    assert conv2.best.macs_ratio == max(c.macs_ratio for c in conv2.candidates)
    assert conv2.line.startswith(
        f"replace conv2 (Conv2D 8->16, 3x3) with {conv2.best.label}"
    )
    assert "time not measured" in conv2.line


def test_candidate_sizes_follow_the_quarter_rule(result):
    conv = result.layers[1].layer
    shape = (2, 8, 8, 8)
    assert candidate_layer("CPConv2D", conv, shape)[0] == "CPConv2D(rank=4)"
    assert candidate_layer("TuckerConv2D", conv, shape)[0] == (
        "TuckerConv2D(rank=(2, 4))"
    )
    assert candidate_layer("BottleneckConv2D", conv, shape)[0] == (
        "BottleneckConv2D(bottleneck_filters=4)"
    )
    label, layer = candidate_layer("DepthwiseSeparableConv2D", conv, shape)
    assert label == "DepthwiseSeparableConv2D"
    assert isinstance(layer, fastconv.DepthwiseSeparableConv2D)
    assert layer.filters == 16 and layer.activation is conv.activation


def test_measured_suggestions_end_the_table_and_the_json(result, tmp_path):
    suggestions = suggest_replacements(
        result, ["CPConv2D", "TuckerConv2D"], measure=True, warmup=0, repeats=1
    )
    for s in suggestions:
        assert s.measured and len(s.timing.samples_ns) == 1
        for c in s.candidates:
            assert c.timing is not None
            assert c.speedup == pytest.approx(s.timing.median / c.timing.median)
        line = s.line
        assert line.startswith(("replace ", "keep ")), line
        if line.startswith("replace "):
            assert "x faster here (measured; " in line
    with_s = result.with_suggestions(suggestions)
    assert with_s.table().endswith("\n".join(s.line for s in suggestions))
    with_s.to_json(tmp_path / "p.json")
    data = load_json(tmp_path / "p.json")
    assert [s["path"] for s in data["suggestions"]] == ["conv1", "conv2"]
    assert data["suggestions"][1]["candidates"][0]["timing"]["samples_ns"]


def _measured(conv_ms, fast_ms):
    """A suggestion with made-up samples (milliseconds): the verdict's rule,
    with no clock involved."""
    conv = Timing(tuple(int(v * 1e6) for v in conv_ms))
    fast = Timing(tuple(int(v * 1e6) for v in fast_ms))
    candidate = Candidate(
        label="TuckerConv2D(rank=(8, 16))",
        macs_ratio=7.4,
        timing=fast,
        speedup=conv.median / fast.median,
    )
    return Suggestion(
        path="conv2",
        description="Conv2D 32->64, 3x3",
        input_shape=(128, 26, 26, 32),
        params=18496,
        macs_per_example=10616832,
        time_share=0.5,
        timing=conv,
        candidates=(candidate,),
        mode="train",
    )


def test_verdict_replace_when_the_spreads_do_not_overlap():
    s = _measured([100, 101, 102, 103, 104], [49, 50, 51, 52, 53])
    assert s.clearly_faster(s.best)
    # Half the step at 2x faster: 1 / (0.5 + 0.25) = 1.33x for the whole step.
    assert s.line == (
        "replace conv2 (Conv2D 32->64, 3x3) with TuckerConv2D(rank=(8, 16)): "
        "2.0x faster here (measured; 7.4x fewer multiply-adds); this layer is "
        "50% of the training step, which would be about 1.33x faster"
    )
    assert s.as_dict()["clearly_faster"] is True


def test_verdict_keep_when_the_spreads_overlap():
    s = _measured([80, 100, 100, 100, 200], [60, 70, 70, 70, 150])
    assert s.best.speedup == pytest.approx(100 / 70)
    assert not s.clearly_faster(s.best)
    assert s.line.startswith(
        "keep conv2 (Conv2D 32->64, 3x3): no fast layer is clearly faster here "
        "(best TuckerConv2D(rank=(8, 16)), 1.43x measured, but its p90 time"
    )


def test_verdict_keep_when_slower():
    s = _measured([10, 10, 10], [20, 20, 20])
    assert s.line.startswith(
        "keep conv2 (Conv2D 32->64, 3x3): no fast layer is faster here "
        "(best TuckerConv2D(rank=(8, 16)), 0.50x measured, 7.4x fewer"
    )


def test_a_candidate_that_cannot_be_built_is_reported(result):
    (s, _) = suggest_replacements(result, ["NoSuchConv2D"])
    assert s.candidates[0].error.startswith("ValueError: NoSuchConv2D is not")
    assert s.best is None
    assert "no fast layer could be built" in s.line


def test_a_factory_is_a_candidate(result):
    def factory(conv, input_shape):
        return fastconv.CPConv2D(conv.filters, conv.kernel_size, rank=1)

    s = suggest_replacements(result, [factory])[1]
    assert s.candidates[0].label == "CPConv2D"
    assert s.candidates[0].params == 1 * (8 + 3 + 3 + 16) + 16


def test_models_without_conv2d_get_no_suggestions():
    model = keras.Sequential([keras.Input((4,)), L.Dense(2)])
    assert suggest_replacements(profile(model, batch_size=2, **FAST)) == ()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(fraction=0),
            "fraction must be a number in \\(0, 1\\], received fraction=0",
        ),
        (dict(fraction=1.5), "received fraction=1.5"),
        (dict(fraction=True), "received fraction=True"),
    ],
)
def test_bad_fraction(result, kwargs, message):
    with pytest.raises(ValueError, match=message):
        suggest_replacements(result, **kwargs)


def test_bad_result():
    with pytest.raises(ValueError, match="received result of type dict"):
        suggest_replacements({"layers": []})


FAST_LAYERS = [
    ("CPConv2D", dict(rank=4)),
    ("TuckerConv2D", dict(rank=(2, 4))),
    ("FactorizedConv2D", dict(intermediate_filters=2)),
    ("BottleneckConv2D", dict(bottleneck_filters=2)),
    ("DepthwiseSeparableConv2D", dict()),
    ("StackedConv2D", dict(kernel_size=5)),
    ("WideConv2D", dict(merged_layers=4)),
]


@pytest.mark.parametrize("name, kwargs", FAST_LAYERS, ids=[n for n, _ in FAST_LAYERS])
def test_train_mode_times_every_fastconv_layer(name, kwargs):
    kwargs = {"kernel_size": 3, **kwargs}
    layer = getattr(fastconv, name)(8, padding="same", name="fast", **kwargs)
    model = keras.Sequential([keras.Input((6, 6, 4)), layer, L.Flatten(name="flat")])
    result = profile(model, batch_size=2, **FAST)
    assert [r.path for r in result.layers] == ["fast", "flat"]
    row = result.layers[0]
    assert row.forward is not None and row.step is not None, row.note
    assert row.backward_s == pytest.approx(row.step_s - row.forward_s)
    assert row.params == model.count_params()


# --------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "model.keras"
    model = keras.Sequential(
        [
            keras.Input((8, 8, 4)),
            fastconv.CPConv2D(8, 3, rank=2, name="cp"),
            L.Conv2D(8, 3, name="conv"),
            L.Flatten(name="flat"),
            L.Dense(2, name="dense"),
        ]
    )
    model.save(path)
    return path


def test_cli_prints_the_table_and_writes_json_and_png(saved_model, tmp_path, capsys):
    code = main(
        [
            "profile",
            str(saved_model),
            "--batch-size",
            "3",
            "--warmup",
            "0",
            "--repeats",
            "1",
            "--jit",
            "off",
            "--json",
            str(tmp_path / "p.json"),
            "--png",
            str(tmp_path / "p.png"),
            "--suggest",
            "macs",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "train mode, batch 3" in out and "bwd ms" in out
    assert "replace conv (Conv2D 8->8, 3x3) with" in out
    data = load_json(tmp_path / "p.json")
    assert [r["path"] for r in data["layers"]] == ["cp", "conv", "flat", "dense"]
    assert data["batch_size"] == 3
    assert data["layers"][0]["class_name"] == "CPConv2D"
    assert [s["path"] for s in data["suggestions"]] == ["conv"]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_inference_mode_with_input_shape(saved_model, capsys):
    args = ["profile", str(saved_model), "--mode", "inference", "--batch-size", "2"]
    code = main([*args, "--input-shape", "8,8,4", "--warmup", "0", "--repeats", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "inference mode, batch 2" in out and "bwd ms" not in out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--batch-size", "0"], "--batch-size must be >= 1, received 0"),
        (["--repeats", "0"], "--repeats must be >= 1, received 0"),
        (["--warmup", "-1"], "--warmup must be >= 0, received -1"),
        (["--input-shape", "8,a"], "--input-shape must be positive ints"),
        (["--input-shape", "8,0,4"], "received '8,0,4'"),
    ],
)
def test_cli_bad_arguments(saved_model, capsys, extra, message):
    assert main(["profile", str(saved_model), *extra]) == 2
    assert message in capsys.readouterr().err


def test_cli_missing_model(tmp_path, capsys):
    missing = str(tmp_path / "nope.keras")
    assert main(["profile", missing]) == 2
    assert f"no such file, received {missing!r}" in capsys.readouterr().err


def test_cli_json_is_plain_json(saved_model, tmp_path):
    main(
        [
            "profile",
            str(saved_model),
            "--warmup",
            "0",
            "--repeats",
            "1",
            "--json",
            str(tmp_path / "p.json"),
        ]
    )
    assert json.loads((tmp_path / "p.json").read_text())["kind"] == "fastconv.profile"
