"""``distribute="mirrored"`` on a CPU split into two logical devices.

The devices must be split before the backend initialises, so each run is a
fresh Python process: TensorFlow with ``tf.config.set_logical_device_configuration``,
JAX with ``--xla_force_host_platform_device_count=2``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, os, sys
from pathlib import Path
if os.environ["KERAS_BACKEND"] == "tensorflow":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
from fastconv.bench import BenchError, models, run_benchmark
from tests.bench.conftest import TINY, tiny_config, tiny_data, tiny_net

models.register_model(TINY, tiny_net, load=tiny_data)
out = Path(sys.argv[1])
try:
    run_benchmark(tiny_config(out / "odd", distribute="mirrored", batch_size=15))
except BenchError as exc:
    odd = str(exc)
results = run_benchmark(
    tiny_config(
        out / "run",
        distribute="mirrored",
        variants=["cp", "converted-tucker"],
        epochs=1,
        repeats=1,
    )
)
info = results["datasets"][TINY]
print("RESULT " + json.dumps({
    "replicas": results["environment"]["replicas"],
    "distribute": results["environment"]["distribute"],
    "variants": list(info["variants"]),
    "accuracy": [v["accuracy"] for v in info["variants"].values()],
    "odd": odd,
}))
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_mirrored_trains_over_two_devices(tmp_path, backend):
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="")
    if backend == "jax":
        flags = env.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=2"
        env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["replicas"] == 2
    assert result["distribute"] == "mirrored"
    assert result["variants"] == ["baseline", "cp", "converted-tucker"]
    assert all(0.0 <= a <= 1.0 for a in result["accuracy"])
    assert "batch sizes must be multiples of the 2 devices" in result["odd"]
    assert "--batch-size 15" in result["odd"]
