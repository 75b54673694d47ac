"""``benchmarks.deploy_graphs``: each hand-built ONNX graph computes its
Keras layer, and the shares are the ratios the docs quote (no speed is
checked)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

deploy_graphs = pytest.importorskip("benchmarks.deploy_graphs")


def require_onnx() -> None:
    if keras.backend.backend() != "tensorflow":
        pytest.skip("benchmarks.deploy_graphs exports on the tensorflow backend")
    for module in ("onnx", "onnxruntime", "tf2onnx"):
        pytest.importorskip(module, reason="pip install fastconv[export]")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    require_onnx()
    models = deploy_graphs.deploy.reference_layer_models(size=6, channels=8, rank=3)
    for model in models.values():
        # Random biases, so that a graph that dropped or misplaced one fails.
        layer = model.layers[-1]
        layer.bias.assign(np.linspace(-1, 1, 8).astype("float32"))
    paths = deploy_graphs.write_files(models, tmp_path_factory.mktemp("graphs"))
    return models, paths


def test_every_variant_is_written_with_the_exports(built):
    _, paths = built
    expected = {"dense/export", "cp/export", "tucker/export"}
    for name, variants in deploy_graphs.VARIANTS.items():
        expected |= {f"{name}/{variant}" for variant in variants}
    assert set(paths) == expected


def test_every_graph_computes_its_keras_model(built):
    models, paths = built
    x = np.random.default_rng(1).standard_normal((3, 6, 6, 8)).astype("float32")
    largest = deploy_graphs.differences(models, paths, x)
    assert set(largest) == set(paths)
    assert max(largest.values()) < 1e-4
    # The check itself can fail: a graph of other weights is far off.
    swapped = dict(paths, **{"cp/conv": paths["tucker/conv"]})
    assert deploy_graphs.differences(models, swapped, x)["cp/conv"] > 1e-2


@pytest.mark.parametrize("spinning", [True, False])
def test_sessions_take_the_thread_count_and_spinning(built, spinning):
    _, paths = built
    options = deploy_graphs.session(paths["cp/conv"], 2, spinning)
    options = options.get_session_options()
    assert options.intra_op_num_threads == 2
    key = "session.intra_op.allow_spinning"
    if spinning:  # ONNX Runtime's default: the entry is not set
        with pytest.raises(RuntimeError, match=key):
            options.get_session_config_entry(key)
    else:
        assert options.get_session_config_entry(key) == "0"


def test_shares_divide_by_the_keras_speedup_of_the_same_run():
    medians = {
        "dense/export/t1": 100.0,
        "cp/export/t1": 20.0,
        "cp/conv/t1": 10.0,
        "dense/keras/-": 90.0,
        "cp/keras/-": 9.0,
    }
    assert deploy_graphs.shares(medians) == {
        "cp/export/t1": {"speedup": 5.0, "share_of_keras": 0.5},
        "cp/conv/t1": {"speedup": 10.0, "share_of_keras": 1.0},
    }


def test_a_tiny_run_writes_its_result(tmp_path, capsys, monkeypatch):
    require_onnx()
    monkeypatch.setenv("FASTCONV_AUTOTUNE_CACHE", str(tmp_path / "autotune.json"))
    argv = ["--size", "6", "--channels", "8", "--rank", "3", "--batch", "2"]
    argv += ["--warmup", "0", "--repeats", "1", "--threads", "1", "2"]
    assert deploy_graphs.main([*argv, "--no-spinning", "--out", str(tmp_path)]) == 0
    run = json.loads((tmp_path / "deploy-graphs.json").read_text())
    assert run["config"]["no_spinning"] is True
    assert run["runtime_versions"]["onnxruntime"]
    assert max(run["largest_difference"].values()) < 1e-4
    variants = sum(len(v) for v in deploy_graphs.VARIANTS.values())
    assert len(run["shares"]) == 2 * (variants + 2)
    assert {k.rsplit("/", 1)[1] for k in run["shares"]} == {"t1", "t2"}
    assert "share of Keras's" in capsys.readouterr().out
