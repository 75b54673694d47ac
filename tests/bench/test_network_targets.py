"""``python -m benchmarks.network_targets --quick``: tiny shapes, one round,
the result's structure (no speed is checked: benchmarks are not timed tests)."""

from __future__ import annotations

import json

import keras
import pytest

network_targets = pytest.importorskip("benchmarks.network_targets")


def test_a_tiny_run_records_every_workload_and_target(tmp_path, monkeypatch):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the committed run is on the tensorflow backend")
    # The run points the autotune cache at a fresh file: not beyond this test.
    monkeypatch.setenv("FASTCONV_AUTOTUNE_CACHE", str(tmp_path / "autotune.json"))
    argv = ["--quick", "--warmup", "0", "--repeats", "1", "--out", str(tmp_path)]
    assert network_targets.main(argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".json") == [
        "network-targets.md"
    ]
    run = json.loads((tmp_path / "network-targets.json").read_text())
    env = run["environment"]
    assert env["backend"] == "tensorflow"
    assert env["cpu"]["model"] and "vector_extensions" in env["cpu"]
    assert env["git_commit"]
    assert run["quick"] is True
    assert set(run["load_average"]) == {"start", "end"}
    assert isinstance(run["shared_machine"], bool)
    results = run["results"]
    assert set(results) == {"mlp", "char_cnn", "conv3d"}
    variants = {
        "mlp": {"dense", "lowrank", "keras-factored"},
        "char_cnn": {"dense", "cp-r4", "cp-r4-all"},
        "conv3d": {"dense", "factorized", "factorized-mid4"},
    }
    for workload, names in variants.items():
        assert set(results[workload]["modes"]) == {"forward", "train"}
        for rows in results[workload]["modes"].values():
            assert set(rows) == names
            for row in rows.values():
                assert len(row["samples_ns"]) == 1
                assert row["speedup"] > 0
                low, high = row["speedup_ci95"]
                assert low <= high
                assert row["params"] > 0
            assert rows["dense"]["speedup"] == 1.0
    mlp = results["mlp"]["modes"]["train"]
    assert mlp["dense"]["params"] == 669_706
    # The plain-Keras factorization has LowRankDense's parameters exactly.
    assert mlp["keras-factored"]["params"] == mlp["lowrank"]["params"]
    char = results["char_cnn"]["modes"]["forward"]
    assert char["cp-r4-all"]["params"] < char["cp-r4"]["params"]
    assert any(c.startswith("conv1_cp: ") for c in char["cp-r4-all"]["auto_choices"])
    cp = char["cp-r4"]
    assert cp["auto_choices"] and all("_cp: " in c for c in cp["auto_choices"])
    assert set(results["char_cnn"]["profiles"]) == {"dense", "cp-r4"}
    judged = {(t["workload"], t["mode"], t["variant"]) for t in run["targets"]}
    assert judged == {
        ("mlp", "train", "lowrank"),
        ("char_cnn", "forward", "cp-r4"),
        ("char_cnn", "forward", "cp-r4-all"),
        ("conv3d", "forward", "factorized"),
        ("conv3d", "forward", "factorized-mid4"),
        ("conv3d", "train", "factorized"),
        ("conv3d", "train", "factorized-mid4"),
    }
    for t in run["targets"]:
        assert isinstance(t["met"], bool) and isinstance(t["interval_above"], bool)
    text = (tmp_path / "network-targets.md").read_text()
    assert "Tiny shapes" in text and "load average" in text
