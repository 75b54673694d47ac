"""``python -m benchmarks.deploy`` on a tiny shape, one round: the result's
structure (no speed is checked: benchmarks are not timed tests)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from fastconv import export

deploy = pytest.importorskip("benchmarks.deploy")


def require_runtimes() -> None:
    if keras.backend.backend() != "tensorflow":
        pytest.skip("benchmarks.deploy runs on the tensorflow backend")
    for format in deploy.FORMATS:
        for module in export.needed_modules(format):
            pytest.importorskip(module, reason="pip install fastconv[export]")


def test_a_tiny_run_records_every_runtime_setting(tmp_path, capsys, monkeypatch):
    require_runtimes()
    # The run points the autotune cache at a fresh file: not beyond this test.
    monkeypatch.setenv("FASTCONV_AUTOTUNE_CACHE", str(tmp_path / "autotune.json"))
    argv = ["--quick", "--size", "8", "--channels", "4", "--rank", "2"]
    argv += ["--batch", "4", "--warmup", "0", "--repeats", "1", "--out", tmp_path]
    assert deploy.main([str(arg) for arg in argv]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "deploy.json",
        "deploy.md",
        "deploy.png",
    ]
    run = json.loads((tmp_path / "deploy.json").read_text())
    assert run["environment"]["cpu"]["model"]
    assert "vector_extensions" in run["environment"]["cpu"]
    assert run["environment"]["git_commit"]
    assert set(run["runtime_versions"]) == set(deploy.PACKAGES)
    assert run["runtime_versions"]["onnxruntime"]
    layer = run["reference_layer"]
    assert run["config"]["apart"]
    settings = {
        "onnxruntime-t1/b1",
        "onnxruntime-t2/b1",
        "onnxruntime-t1/b4",
        "onnxruntime-t2/b4",
        "litert-t1/b1",
        "litert-t2/b1",
        "openvino/b1",
        "openvino/b4",
    }
    # Each runtime setting ran apart, with Keras timed in its run.
    settings |= {
        f"keras@{runtime}/{batch}"
        for runtime in deploy.RUNTIMES
        for batch in ("b1", "b4")
    }
    assert set(layer["timings"]) == {
        f"{model}/{setting}"
        for model in ("dense", "cp", "tucker")
        for setting in settings
    }
    assert all(len(t["samples_ns"]) == 1 for t in layer["timings"].values())
    assert set(layer["speedups"]) == settings
    for variants in layer["speedups"].values():
        assert set(variants) == {"cp", "tucker"}
        assert all(v["speedup"] > 0 for v in variants.values())
    for setting in settings:
        if setting.startswith("keras@"):
            shares = [v["share_of_keras"] for v in layer["speedups"][setting].values()]
            assert shares == pytest.approx([1.0, 1.0])
    targeted = {
        f"{variant}/{setting}"
        for variant in ("cp", "tucker")
        for setting in (
            "litert-t1/b1",
            "litert-t2/b1",
            "onnxruntime-t1/b4",
            "onnxruntime-t2/b4",
        )
    }
    assert set(layer["targets"]) == targeted
    for name, verdict in layer["targets"].items():
        variant, setting = name.split("/", 1)
        runtime = setting.split("/")[0]
        keras_speedup = layer["speedups"][f"keras@{runtime}/b4"][variant]["speedup"]
        share = layer["speedups"][setting][variant]["speedup"] / keras_speedup
        assert verdict == {"share": pytest.approx(share), "met": share >= 0.8}
    graphs = layer["graphs"]
    assert graphs["dense"]["onnx_ops"].get("Conv") == 1
    assert graphs["cp"]["onnx_grouped_convs"] >= 1
    assert graphs["dense"]["litert_delegate_partitions"] >= 1
    chosen = layer["keras_implementations"]
    assert chosen["dense"] == {}
    (cp_layer,) = chosen["cp"].values()
    assert set(cp_layer) == {"(1, 8, 8, 4)", "(4, 8, 8, 4)"}
    assert "skipped" in run["cifar10"]
    assert "Reference layer: batch 4, 8x8, 4->4" in capsys.readouterr().out


def test_runtimes_restricts_the_rounds_to_those_settings_and_keras(
    tmp_path, monkeypatch
):
    require_runtimes()
    monkeypatch.setenv("FASTCONV_AUTOTUNE_CACHE", str(tmp_path / "autotune.json"))
    argv = ["--quick", "--size", "8", "--channels", "4", "--rank", "2"]
    argv += ["--batch", "4", "--warmup", "0", "--repeats", "1", "--out", tmp_path]
    argv += ["--runtimes", "onnxruntime-t1", "litert-t2", "--together"]
    assert deploy.main([str(arg) for arg in argv]) == 0
    run = json.loads((tmp_path / "deploy.json").read_text())
    assert run["config"]["runtimes"] == ["onnxruntime-t1", "litert-t2"]
    layer = run["reference_layer"]
    settings = {
        "onnxruntime-t1/b1",
        "onnxruntime-t1/b4",
        "litert-t2/b1",
        "keras/b1",
        "keras/b4",
    }
    assert set(layer["speedups"]) == settings
    assert {name.split("/", 1)[1] for name in layer["timings"]} == settings
    assert set(layer["targets"]) == {
        f"{variant}/{setting}"
        for variant in ("cp", "tucker")
        for setting in ("onnxruntime-t1/b4", "litert-t2/b1")
    }


def test_cifar10_is_skipped_with_the_reason_when_not_cached(tmp_path, monkeypatch):
    from fastconv.bench import references

    missing = tmp_path / "cifar10.keras"
    monkeypatch.setattr(references, "reference_path", lambda dataset: missing)
    part = deploy.cifar10_part(tmp_path, args=None)
    assert part == {"skipped": part["skipped"]}
    assert str(missing) in part["skipped"] and "never trains" in part["skipped"]


def test_litert_accuracy_counts_the_argmax_hits_chunk_by_chunk(tmp_path):
    require_runtimes()
    model = deploy.reference_layer_models(size=4, channels=4, rank=2)["dense"]
    x = np.random.default_rng(0).standard_normal((10, 4, 4, 4)).astype("float32")
    # Each example's label: the argmax over the channels of its first pixel.
    labels = keras.ops.convert_to_numpy(model(x))[:, 0, 0].argmax(axis=-1)
    flatten = keras.Sequential([model, keras.layers.Lambda(lambda t: t[:, 0, 0])])
    path = export.export_model(flatten, tmp_path / "m.tflite", "litert")
    assert deploy.litert_accuracy(path, x, labels, chunk=3) == 1.0
    wrong = (labels + 1) % 4
    wrong[:4] = labels[:4]
    assert deploy.litert_accuracy(path, x, wrong, chunk=3) == pytest.approx(0.4)


def test_as_float32_copies_a_mixed_precision_model_into_float32():
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(4, 3, dtype="mixed_bfloat16")(inputs)
    x = keras.layers.BatchNormalization(dtype="mixed_bfloat16")(x)
    model = keras.Model(inputs, keras.layers.Flatten()(x))
    copy = deploy.as_float32(model)
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    for mine, theirs in zip(copy.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    x = np.random.default_rng(0).random((2, 4, 4, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(copy(x)), expected, atol=0.05)
