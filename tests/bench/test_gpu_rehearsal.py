"""The GPU run's CPU rehearsal: ``benchmarks/gpu/run.sh --rehearse`` end to end.

JAX on the CPU, a tiny layer point and synthetic MNIST-shaped data, so it
needs no GPU and no network; it keeps the script that no GPU has run yet from
rotting. About a minute on a quiet 2-core CPU.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "benchmarks" / "gpu" / "run.sh"

pytest.importorskip("jax")


def _numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, float | int) and not isinstance(value, bool):
        yield value


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-rehearsal")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KERAS_", "FASTCONV_", "JAX_"))
    }
    env["PYTHON"] = sys.executable
    proc = subprocess.run(
        ["bash", str(RUN), "--rehearse", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    return proc, out


def test_rehearsal_exits_cleanly_and_logs_every_part(rehearsal):
    proc, out = rehearsal
    log = (out / "log.txt").read_text()
    assert proc.returncode == 0, proc.stdout + proc.stderr + log
    for part in ("env", "jax: layers", "jax: bench mnist", "jax: checkpoints"):
        assert f"== {part}: ok in " in log, log
    assert "0 part(s) failed" in log
    if list((ROOT / "benchmarks" / "models").glob("*.keras")):
        # The committed checkpoints, timed at batch 1 only in a rehearsal.
        assert "checkpoints: batch 1 done" in log, log
        assert "checkpoints: batch 64" not in log, log
    else:
        assert "checkpoints: skipped: no trained checkpoints" in log


def test_rehearsal_writes_few_files_one_folder_deep(rehearsal):
    _, out = rehearsal
    entries = list(out.iterdir())
    assert all(p.is_file() for p in entries)
    checkpoints = list((ROOT / "benchmarks" / "models").glob("*.keras"))
    assert sorted(p.name for p in entries) == [
        "bench-jax.json",
        *(["checkpoints-jax.json"] if checkpoints else []),
        "env.json",
        "layers-jax.json",
        "log.txt",
    ]
    assert len(entries) <= 8


def test_rehearsal_json_is_complete_and_finite(rehearsal):
    _, out = rehearsal
    env = json.loads((out / "env.json").read_text())
    assert env["mode"] == "rehearse"
    assert {"nvidia_smi", "torch", "jax", "cpu", "versions", "git_commit"} <= set(env)
    assert env["jax"]["backend"] == "cpu"

    layers = json.loads((out / "layers-jax.json").read_text())
    assert sorted(layers) == ["bfloat16", "float32"]
    for precision, run in layers.items():
        assert run["environment"]["precision"] == precision
        assert run["environment"]["backend"] == "jax"
        assert run["environment"]["git_commit"]
        assert {s["mode"] for s in run["summary"]} == {"forward", "train"}
        for s in run["summary"]:
            assert s["layer"] == "CPConv2D"
            assert all(v > 0 for v in s["speedups"].values())

    bench = json.loads((out / "bench-jax.json").read_text())
    assert list(bench) == ["mnist"]
    mnist = bench["mnist"]
    assert mnist["data_source"] == "synthetic (seeded noise)"
    assert mnist["environment"]["git_commit"]
    assert set(mnist["datasets"]["mnist"]["variants"]) >= {"baseline", "cp"}

    for data in (env, layers, bench):
        assert all(math.isfinite(x) for x in _numbers(data))
