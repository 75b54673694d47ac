"""The trade-off sweep on a tiny model and synthetic data: no dataset, no
reference, a few seconds."""

import json

import keras
import numpy as np
import pytest

from benchmarks import tradeoffs


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x_all = rng.standard_normal((48, 8, 8, 1)).astype("float32")
    y_all = rng.integers(0, 3, 48).astype("int32")
    return model, (x_all[:32], y_all[:32]), (x_all[32:], y_all[32:])


@pytest.fixture(scope="module")
def points(tiny):
    model, train, test = tiny
    collected = []
    swept = tradeoffs.sweep(
        model,
        train,
        test,
        methods=["tucker"],
        ranks=[0.5, 0.25, "no-such-rule"],
        seeds=[0, 1],
        batch_size=8,
        warmup=0,
        repeats=1,
        search_targets=[1.05],
        search_data=train,
        search_batch_size=8,
        points=collected,
    )
    assert swept is collected
    return swept


@pytest.fixture
def run(points):
    return {
        "dataset": "tiny",
        "reference": {"path": "tiny.keras", "test_accuracy": 0.5},
        "environment": {
            "backend": keras.backend.backend(),
            "git_commit": "0" * 40,
            "cpu": {"model": "test CPU", "vector_extensions": ["avx2"]},
        },
        "config": {
            "seeds": [0, 1],
            "epochs": 1,
            "batch_size": 8,
            "train_examples": 32,
            "test_examples": 16,
            "warmup": 0,
            "repeats": 1,
        },
        "points": points,
    }


def test_a_point_keeps_every_measurement(points):
    point, _, failed, _ = points
    assert point["method"] == "tucker" and point["rank"] == 0.5
    assert {"conversion", "params", "accuracy_converted", "timings", "speedups"} <= (
        set(point)
    )
    assert set(point["speedups"]) == {"forward_b1", "forward_b256", "train_b8"}
    for what in point["speedups"]:
        for label in ("original", "converted"):
            assert len(point["timings"][f"{what}/{label}"]["samples_ns"]) == 1
    assert point["params"]["converted"] < point["params"]["original"]
    assert [r["seed"] for r in point["finetune"]] == [0, 1]
    assert point["summary"]["seeds"] == 2
    assert point["summary"]["gap_points"] == pytest.approx(
        np.mean(
            [
                100 * (r["converted_accuracy"] - r["control_accuracy"])
                for r in point["finetune"]
            ]
        )
    )
    assert "error" in failed and "no-such-rule" in failed["error"]


def test_the_control_gets_the_same_training(points):
    for run in points[0]["finetune"]:
        assert run["same_batches"]
        assert run["steps"]["converted"] == run["steps"]["control"] == 4


def test_one_control_per_seed_serves_every_point(points):
    first, second = points[0]["finetune"], points[1]["finetune"]
    assert [r["control_reused"] for r in first] == [False, False]
    assert [r["control_reused"] for r in second] == [True, True]
    for one, two in zip(first, second, strict=True):
        assert one["control_accuracy"] == two["control_accuracy"]
        assert two["same_batches"]


def test_a_search_point_is_measured_like_the_others(points):
    search = points[-1]
    assert search["method"] == "search" and search["rank"] == "target 1.05x"
    if "error" in search:
        assert "target_speedup=1.05" in search["error"]
    else:
        assert search["search"]["target"] == {"target_speedup": 1.05}
        assert {"speedups", "finetune", "summary"} <= set(search)


def _point(method, rank, speedup, converted, tuned, gap=0.0, train=2.0):
    return {
        "method": method,
        "rank": rank,
        "speedups": {"forward_b1": 1.0, "forward_b256": speedup, "train_b8": train},
        "accuracy_converted": converted,
        "summary": {"finetuned_accuracy": tuned, "gap_points": gap},
        "search": {"predicted_speedup": speedup},
    }


def test_search_against_uniform_compares_at_equal_speed():
    run = {
        "points": [
            _point("cp", 0.25, 3.0, 0.80, 0.90),
            _point("tucker", "vbmf", 2.0, 0.85, 0.92),
            _point("tucker", 0.5, 1.5, 0.95, 0.95),
            _point("search", "target 2.5x", 2.5, 0.90, 0.91),
        ]
    }
    text = "\n".join(tradeoffs.search_against_uniform(run))
    assert "| cp 0.25 | 3.00 | 80.00 | 90.00 | yes | yes |" in text
    assert "| tucker vbmf | 2.00 |" not in text
    assert "tucker 0.5" not in text
    run["points"][0]["speedups"]["forward_b256"] = 2.2
    text = "\n".join(tradeoffs.search_against_uniform(run))
    assert "none: no uniform rank was that fast" in text
    assert "calibration" not in text
    run["points"][3]["search"].update(
        achieved_speedup=2.4,
        calibration={"scale": 0.5, "fastest_speedup": 3.5, "fastest_predicted": 6.0},
    )
    text = "\n".join(tradeoffs.search_against_uniform(run))
    assert (
        "fastest candidate measured x3.50 (the layers alone predicted x6.00, " in text
    )
    assert (
        "scale 0.5000); the search's own check measured the chosen model at x2.40"
        in (text)
    )


def test_best_point_is_the_fastest_within_the_target():
    run = {
        "dataset": "cifar10",
        "points": [
            _point("cp", 0.1, 4.0, 0.5, 0.5, gap=-3.0),
            _point("cp", 0.25, 3.0, 0.8, 0.9, gap=-0.9),
            _point("tucker", 0.5, 1.5, 0.9, 0.9, gap=0.1),
        ],
    }
    assert tradeoffs.best_point(run)["rank"] == 0.25
    run["points"] = run["points"][:1]
    assert tradeoffs.best_point(run)["rank"] == 0.1
    run["points"] = []
    assert tradeoffs.best_point(run) is None


def test_the_results_are_json(run):
    assert json.loads(json.dumps(run))["points"][0]["summary"]["seeds"] == 2


def test_pareto_front_on_fixed_points():
    points = [(1.0, 0.0), (2.0, -0.1), (1.5, -0.2), (3.0, -1.0), (3.0, -2.0)]
    assert tradeoffs.pareto_front(points) == [0, 1, 3]
    assert tradeoffs.pareto_front([(1.0, 1.0), (1.0, 1.0)]) == [0, 1]
    assert tradeoffs.pareto_front([]) == []


@pytest.mark.parametrize(
    "speedup, gap, meets", [(2.0, -0.5, True), (1.9, 0.0, False), (3.0, -0.6, False)]
)
def test_target(speedup, gap, meets):
    point = {"speedups": {"forward_b256": speedup}, "summary": {"gap_points": gap}}
    assert tradeoffs.meets_target(point) is meets


def test_the_cifar10_target_asks_for_the_training_step_too():
    target = tradeoffs.target_of("cifar10")
    assert tradeoffs.target_of("mnist") == tradeoffs.TARGET
    fast = _point("cp", 0.25, 2.6, 0.9, 0.9, gap=-0.9, train=2.1)
    assert tradeoffs.meets_target(fast, target)
    slow = _point("cp", 0.25, 2.6, 0.9, 0.9, gap=-0.9, train=1.9)
    assert not tradeoffs.meets_target(slow, target)
    assert "training step" in str(target)


def test_report_regenerates_markdown_and_plot_from_json(run, tmp_path):
    path = tmp_path / "tradeoffs-tiny.json"
    path.write_text(json.dumps(run))
    assert tradeoffs.main(["--report", str(path)]) == 0
    text = path.with_suffix(".md").read_text()
    assert path.with_suffix(".png").stat().st_size > 0
    point = run["points"][0]
    assert f"| tucker | 0.5 | {point['params']['converted']:,} / " in text
    assert f"{point['speedups']['forward_b256']:.2f}" in text
    assert "2 seed(s)" in text and "failed: ValueError" in text
    assert "random crops" not in text
    run["config"]["augment_shift"] = 4
    text = tradeoffs.markdown(run)
    assert "Adam at learning rate 1e-4 (finetune's default), with random crops " in text
    assert "(shifts of up to 4 pixels) and flips;" in text
    assert "distillation" not in text
    run["config"].update(
        optimizer="sgd", learning_rate=0.003, augment_shift=None, distill=0.5
    )
    assert (
        "training examples, SGD with momentum 0.9 at learning rate 0.003, learning "
        "the reference's predictions mixed in at weight 0.5 (distillation);"
    ) in tradeoffs.markdown(run)


def test_cifar10_is_refused_unless_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCONV_DATA_DIR", str(tmp_path))
    with pytest.raises(SystemExit, match="cifar10 reference is not cached"):
        tradeoffs.refuse_untrained(["mnist", "cifar10"])


def test_parse_rank():
    assert tradeoffs.parse_rank("0.25") == 0.25
    assert tradeoffs.parse_rank("8") == 8
    assert tradeoffs.parse_rank("energy:0.9") == "energy:0.9"


def test_layer_types_converts_the_hidden_dense_layers_too(tiny, run):
    _, train, test = tiny
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="classifier")(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    (point,) = tradeoffs.sweep(
        model,
        train,
        test,
        methods=["tucker"],
        ranks=[0.5],
        seeds=[0],
        batch_size=8,
        warmup=0,
        repeats=1,
        layer_types=("conv", "dense"),
    )
    rows = {row["name"]: row for row in point["conversion"]["layers"]}
    assert rows["hidden"]["converted"] and rows["hidden"]["method"] == "svd"
    assert not rows["classifier"]["converted"]
    assert point["conversion"]["settings"]["layer_types"] == ["conv", "dense"]
    config = {**run["config"], "layer_types": ["conv", "dense"]}
    text = tradeoffs.markdown({**run, "config": config, "points": [point]})
    assert "the Dense layers but the classifier" in text
