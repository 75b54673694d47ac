"""benchmarks/deploy_isolated.py: each session timed alone in its own process."""

import json

import pytest

pytest.importorskip("onnxruntime", reason="needs the export extra (onnxruntime)")

from benchmarks import deploy_isolated  # noqa: E402


def test_a_tiny_run_times_every_session_alone(tmp_path):
    argv = [
        *("--size", "6", "--channels", "4", "--rank", "2", "--batch", "3"),
        *("--rounds", "1", "--repeats", "2", "--warmup", "0"),
        *("--runtimes", "onnxruntime", "keras", "--out", str(tmp_path)),
    ]
    assert deploy_isolated.main(argv) == 0
    run = json.loads((tmp_path / "deploy-isolated.json").read_text())
    settings = ["onnxruntime-t1/b1", "onnxruntime-t1/b3", "onnxruntime-t2/b1"]
    settings += ["onnxruntime-t2/b3", "keras/b1", "keras/b3"]
    for setting in settings:
        for model in deploy_isolated.MODELS:
            (samples,) = run["samples_ns"][f"{model}/{setting}"]  # one round
            assert len(samples) == 2 and min(samples) > 0
    # The runtime processes never imported TensorFlow.
    assert all(run["alone"].values())
    assert set(run["summary"]) == set(settings)
    keras = run["summary"]["keras/b3"]["cp"]
    assert keras["share_of_keras"] == pytest.approx(1.0)
    row = run["summary"]["onnxruntime-t2/b1"]["tucker"]
    assert row["speedup"] == pytest.approx(row["dense_ms"] / row["ms"])
    text = (tmp_path / "deploy-isolated.md").read_text()
    assert "| onnxruntime-t2/b3 | cp |" in text and "Runtimes alone" in text


def test_keras_is_required(capsys):
    with pytest.raises(SystemExit):
        deploy_isolated.main(["--runtimes", "onnxruntime"])
    assert "--runtimes must include keras" in capsys.readouterr().err
