"""The harness on a tiny registered dataset: what it measures and records.

Every run here is a few steps on 96 tiny images with a few timing samples:
the tests check what is measured and written, never how fast anything is.
"""

import json
import math

import keras
import numpy as np
import pytest

from fastconv.bench import models
from fastconv.bench.runner import compare, run_benchmark, training_schedule

from .conftest import TINY_TEST, TINY_TRAIN, tiny_config, tiny_data

ALL = list(models.VARIANTS)
SCRATCH = [n for n, v in models.VARIANTS.items() if v.kind == "scratch"]
CONVERTED = [n for n, v in models.VARIANTS.items() if v.kind == "converted"]


@pytest.fixture(scope="module")
def tiny_info(tiny_run):
    return tiny_run[1]["datasets"]["tiny"]


# ------------------------------------------------------------------ pure math
def test_training_schedule_rotates_every_variant_once_per_epoch():
    schedule = training_schedule(["a", "b", "c"], 4)
    assert schedule == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]


def test_compare_gives_ratios_efficiency_and_points():
    base = {
        "macs": 1000,
        "train_epoch_s": 2.0,
        "latency_s": {"1": 0.010, "64": 0.100},
        "accuracy": 0.90,
    }
    variant = {
        "macs": 250,
        "train_epoch_s": 1.0,
        "latency_s": {"1": 0.010, "64": 0.050},
        "accuracy": 0.88,
    }
    vs = compare(variant, base)
    assert vs["flop_ratio"] == 4.0
    assert vs["train_speedup"] == 2.0
    assert vs["inference_speedup"] == {"1": 1.0, "64": 2.0}
    assert vs["train_efficiency"] == 0.5
    assert vs["inference_efficiency"] == {"1": 0.25, "64": 0.5}
    assert vs["accuracy_diff_points"] == pytest.approx(-2.0)


def test_compare_leaves_missing_measurements_empty():
    base = {"macs": 10, "train_epoch_s": 1.0, "latency_s": {"1": 1.0}, "accuracy": 1}
    vs = compare({"macs": 0, "train_epoch_s": None, "latency_s": {}}, base)
    assert vs["flop_ratio"] is None and vs["train_speedup"] is None
    assert vs["train_efficiency"] is None and vs["accuracy_diff_points"] is None
    assert vs["inference_speedup"] == {}


# ------------------------------------------------------------- a whole run
def test_run_measures_every_variant(tiny_info):
    assert list(tiny_info["variants"]) == ALL
    assert tiny_info["skipped"] == {}
    assert tiny_info["train_examples"] == TINY_TRAIN
    assert tiny_info["test_examples"] == TINY_TEST
    assert tiny_info["input_shape"] == [12, 12, 1]
    assert tiny_info["num_classes"] == 3
    for name, entry in tiny_info["variants"].items():
        assert entry["kind"] == models.VARIANTS[name].kind
        assert 0.0 <= entry["accuracy"] <= 1.0
        assert entry["params"] > 0 and entry["macs"] > 0


def test_training_is_round_robin_with_a_warm_up_epoch(tiny_run, tiny_info):
    config = tiny_run[0]
    trained = [n for n in ALL if n not in CONVERTED]
    assert tiny_info["train_order"] == training_schedule(trained, config.epochs + 1)
    for name in trained:
        train = tiny_info["variants"][name]["train"]
        assert len(train["warmup_ns"]) == 1
        assert train["epochs"]["n"] == config.epochs
        assert len(train["epochs"]["samples_ns"]) == config.epochs
        assert train["epochs"]["median_s"] == pytest.approx(
            float(np.median(train["epochs"]["samples_ns"])) / 1e9
        )
        assert len(train["loss"]) == config.epochs + 1


def test_inference_keeps_every_raw_sample_at_both_batches(tiny_run, tiny_info):
    config = tiny_run[0]
    for entry in tiny_info["variants"].values():
        assert set(entry["inference"]) == {"1", str(config.inference_batch_size)}
        for timing in entry["inference"].values():
            assert timing["n"] == config.repeats == len(timing["samples_ns"])
            assert timing["warmup"] == config.warmup
            assert timing["p10_s"] <= timing["median_s"] <= timing["p90_s"]


def test_summary_and_ratios_follow_from_the_measurements(tiny_info):
    base = tiny_info["variants"]["baseline"]
    large = str(tiny_info["inference_batch_size"])
    assert base["vs_baseline"]["train_speedup"] == 1.0
    assert base["vs_baseline"]["flop_ratio"] == 1.0
    assert base["vs_baseline"]["accuracy_diff_points"] == 0.0
    for name, entry in tiny_info["variants"].items():
        summary, vs = entry["summary"], entry["vs_baseline"]
        latency = entry["inference"][large]["median_s"]
        assert summary["latency_s"][large] == latency
        assert summary["inference_examples_per_s"][large] == pytest.approx(
            int(large) / latency
        )
        assert vs["flop_ratio"] == pytest.approx(base["macs"] / entry["macs"])
        assert vs["inference_speedup"][large] == pytest.approx(
            base["summary"]["latency_s"][large] / latency
        )
        assert vs["inference_efficiency"][large] == pytest.approx(
            vs["inference_speedup"][large] / vs["flop_ratio"]
        )
        assert vs["accuracy_diff_points"] == pytest.approx(
            100 * (entry["accuracy"] - base["accuracy"])
        )
        if name in CONVERTED:
            assert entry["train"] is None and vs["train_speedup"] is None
        else:
            epoch_s = entry["train"]["epochs"]["median_s"]
            assert summary["train_examples_per_s"] == pytest.approx(
                TINY_TRAIN / epoch_s
            )
            assert vs["train_speedup"] == pytest.approx(
                base["summary"]["train_epoch_s"] / epoch_s
            )
            assert vs["train_efficiency"] == pytest.approx(
                vs["train_speedup"] / vs["flop_ratio"]
            )


def test_scratch_variants_use_their_layers(tiny_info):
    layers = {n: e["layers"] for n, e in tiny_info["variants"].items()}
    assert layers["cp"].count("CPConv2D") == 3
    assert layers["stacked"].count("StackedConv2D") == 1
    assert layers["wide"].count("WideConv2D") == 1
    assert "Conv2D" in layers["cp"]  # the first convolution stays


def test_converted_variants_record_conversion_and_fine_tune(tiny_run, tiny_info):
    config = tiny_run[0]
    for name in CONVERTED:
        entry = tiny_info["variants"][name]
        converted = entry["converted"]
        assert converted["options"] == models.VARIANTS[name].convert
        assert 0.0 <= converted["accuracy_after_conversion"] <= 1.0
        assert converted["convert_s"] > 0
        finetune = converted["finetune"]
        assert finetune["epochs"] == config.finetune_epochs
        assert len(finetune["epoch_samples_ns"]) == config.finetune_epochs
        # The conversion report, as JSON: every Conv2D it converted went
        # through the variant's method, and the parameters shrank.
        report = converted["report"]
        method = models.VARIANTS[name].convert["method"]
        rows = [row for row in report["layers"] if row["converted"]]
        assert rows and all(row["method"] == method for row in rows)
        new_types = {"cp": {"CPConv2D"}, "tucker": {"TuckerConv2D"}}[method]
        assert {row["new_type"] for row in rows} == new_types
        assert report["params_after"] < report["params_before"]
        assert entry["macs"] < tiny_info["variants"]["baseline"]["macs"]


def test_results_record_environment_and_config(tiny_run):
    config, results = tiny_run
    env = results["environment"]
    assert env["backend"] == keras.backend.backend()
    assert env["precision"] == "float32"
    assert env["device_option"] == "auto" and env["device_used"]
    assert env["distribute"] == "none" and env["replicas"] == 1
    # tests/conftest.py sets FASTCONV_AUTOTUNE=0 for the test session.
    assert env["autotune"] is False and env["autotune_cache"]
    for key in ("date", "device", "git_commit", "cpu_count", "python"):
        assert key in env
    assert env["versions"]["keras"] == keras.__version__
    assert results["config"]["epochs"] == config.epochs
    assert results["config"]["variants"] == ALL
    assert results["config"]["suite"] == "custom"


def test_results_folder_has_json_markdown_and_plots(tiny_run):
    config, results = tiny_run
    out = config.out
    saved = json.loads((out / "results.json").read_text())
    assert saved == {k: v for k, v in results.items() if k != "out"}
    table = (out / "results.md").read_text()
    assert "## tiny: `tiny_net`" in table
    for name in SCRATCH:
        assert f"| {name} |" in table
    assert "| converted-cp (as converted) |" in table
    assert "| converted-cp (+1 ep. fine-tune) |" in table
    for png in ("accuracy_vs_speedup.png", "times.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_gives_same_accuracy(tiny_dataset, tmp_path):
    runs = [
        run_benchmark(
            tiny_config(tmp_path / str(i), variants=["baseline"], epochs=1, repeats=1)
        )
        for i in range(2)
    ]
    first, second = (r["datasets"]["tiny"]["variants"]["baseline"] for r in runs)
    assert first["accuracy"] == second["accuracy"]
    assert first["train"]["loss"] == second["train"]["loss"]


def test_subsets_are_seeded_and_sized(tiny_dataset, tmp_path):
    results = run_benchmark(
        tiny_config(
            tmp_path,
            variants=["baseline"],
            epochs=1,
            repeats=1,
            train_subset=32,
            test_subset={"tiny": 16},
        )
    )
    info = results["datasets"]["tiny"]
    assert (info["train_examples"], info["train_available"]) == (32, TINY_TRAIN)
    assert (info["test_examples"], info["test_available"]) == (16, TINY_TEST)


def test_not_applicable_variant_is_skipped_with_the_reason(tmp_path):
    def one_3x3(convs, input_shape, num_classes):
        inputs = keras.Input(input_shape)
        x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
        x = convs.conv(8, 3, padding="same")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(num_classes)(x))

    models.register_model("one3x3", one_3x3, load=tiny_data)
    try:
        results = run_benchmark(
            tiny_config(
                tmp_path,
                datasets=("one3x3",),
                variants=["stacked", "cp"],
                epochs=1,
                repeats=1,
            )
        )
    finally:
        models.MODELS.pop("one3x3")
    info = results["datasets"]["one3x3"]
    assert list(info["variants"]) == ["baseline", "cp"]
    assert "odd kernel >= 5" in info["skipped"]["stacked"]
    assert "`stacked` not run" in (tmp_path / "results" / "results.md").read_text()


def test_load_argument_replaces_every_loader(tiny_dataset, tmp_path):
    calls = []

    def load(name):
        calls.append(name)
        return tiny_data(name)

    run_benchmark(
        tiny_config(tmp_path, variants=["baseline"], epochs=1, repeats=1), load=load
    )
    assert calls == ["tiny"]


@pytest.mark.parametrize(
    "variant, precision, jit",
    [("tucker", "mixed_bfloat16", False), ("baseline", "float32", True)],
)
def test_precision_and_jit_options(tiny_dataset, tmp_path, variant, precision, jit):
    results = run_benchmark(
        tiny_config(
            tmp_path,
            variants=[variant],
            epochs=1,
            repeats=1,
            precision=precision,
            jit=jit,
        )
    )
    assert results["environment"]["precision"] == precision
    assert results["environment"]["jit_option"] is jit
    info = results["datasets"]["tiny"]
    assert info["jit_compile"] is jit
    assert math.isfinite(info["variants"][variant]["train"]["loss"][-1])
    assert keras.config.dtype_policy().name == "float32"  # restored afterwards
