"""``distribution="multi-worker"``: two worker processes on 127.0.0.1.

Each worker is a fresh Python process with its own ``KERAS_BACKEND`` and its
place in the cluster in the environment (``TF_CONFIG``, or the
``KERAS_DISTRIBUTION_*`` variables for JAX). They fine-tune a tiny network for
a fixed number of steps with ``fastconv.finetune(..., distribution=
"multi-worker")`` and write their weights and per-step losses; worker 0 also
trains a copy of the same network alone, on the same global batches, as the
reference. The test bounds the whole run in time and kills what is left.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastconv.convert import cluster

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 150

WORKER = """
import json, os, sys
from pathlib import Path
from fastconv.convert import cluster

workers = cluster.join_cluster(timeout_s=60)
pid = workers.cluster.process_id
out = Path(sys.argv[1])
if sys.argv[2] == "die" and pid == 1:
    os._exit(3)  # a worker lost after the cluster formed
import keras
import numpy as np
from fastconv import finetune

class Losses(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []
    def on_train_batch_end(self, batch, logs=None):
        self.seen.append(float(logs["loss"]))

def train(model, distribution):
    losses = Losses()
    finetune(model, x, y, epochs=2, batch_size=8, learning_rate=1e-2,
             distribution=distribution, shuffle=False, callbacks=[losses])
    return losses.seen

rng = np.random.default_rng(0)
x = rng.normal(size=(40, 6, 6, 1)).astype("float32")
y = (np.arange(40) % 3).astype("int32")
keras.utils.set_random_seed(0)
model = keras.Sequential([
    keras.Input((6, 6, 1)),
    keras.layers.Conv2D(4, 3, activation="relu"),
    keras.layers.GlobalAveragePooling2D(),
    keras.layers.Dense(3, activation="softmax"),
])
model.compile(loss="sparse_categorical_crossentropy")
initial = model.get_weights()
np.savez(out / "initial.npz", *initial)
result = {"losses": train(model, "multi-worker"), "replicas": workers.replicas}
if pid == 0:
    alone = keras.models.clone_model(model)
    alone.set_weights(initial)
    alone.compile(loss="sparse_categorical_crossentropy")
    result["alone"] = train(alone, None)
    np.savez(out / "alone.npz", *alone.get_weights())
np.savez(out / f"worker{pid}.npz", *model.get_weights())
(out / f"worker{pid}.json").write_text(json.dumps(result))
"""


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _cluster_env(backend, process_id, ports):
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if backend == "tensorflow":
        env["TF_CONFIG"] = json.dumps(
            {
                "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                "task": {"type": "worker", "index": process_id},
            }
        )
    else:
        env["JAX_PLATFORMS"] = "cpu"
        env["KERAS_DISTRIBUTION_JOB_ADDRESSES"] = f"127.0.0.1:{ports[0]}"
        env["KERAS_DISTRIBUTION_NUM_PROCESSES"] = str(len(ports))
        env["KERAS_DISTRIBUTION_PROCESS_ID"] = str(process_id)
    return env


def _run_workers(backend, out, mode):
    """Starts two workers; returns ``[(returncode, stderr)]`` once both end,
    killing both (and failing) past ``TIMEOUT_S``."""
    ports = _free_ports(2)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(out), mode],
            cwd=ROOT,
            env=_cluster_env(backend, i, ports),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + TIMEOUT_S
    results = []
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((proc.returncode, err))
    except subprocess.TimeoutExpired:
        pytest.fail(f"{backend} workers still running after {TIMEOUT_S} s")
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
    return results


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_two_workers_match_one_process(tmp_path, backend):
    results = _run_workers(backend, tmp_path, "train")
    for rc, err in results:
        assert rc == 0, err[-3000:]
    reports = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in (0, 1)]
    assert reports[0]["replicas"] == reports[1]["replicas"] == 2
    assert len(reports[0]["losses"]) == 10  # 2 epochs of 5 global batches
    weights = [np.load(tmp_path / f"worker{i}.npz") for i in (0, 1)]
    alone = np.load(tmp_path / "alone.npz")
    assert len(weights[0].files) == len(alone.files) == 4
    for name in alone.files:
        np.testing.assert_array_equal(weights[0][name], weights[1][name])
        np.testing.assert_allclose(weights[0][name], alone[name], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(reports[0]["losses"], reports[1]["losses"])
    np.testing.assert_allclose(
        reports[0]["losses"], reports[0]["alone"], rtol=1e-5, atol=1e-7
    )
    initial = np.load(tmp_path / "initial.npz")
    assert not np.allclose(initial["arr_0"], weights[0]["arr_0"])  # it trained


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_a_dead_worker_fails_the_other(tmp_path, backend):
    start = time.monotonic()
    (rc0, err0), (rc1, _) = _run_workers(backend, tmp_path, "die")
    assert rc1 == 3
    assert rc0 != 0, "worker 0 finished without its peer"
    assert time.monotonic() - start < TIMEOUT_S
    lost = r"stopped sending heartbeats\):\s*(/job:worker/replica:0/task:)?1\s"
    assert re.search(lost, err0), err0[-3000:]
    if backend == "tensorflow":
        assert "ClusterError: multi-worker: " in err0, err0[-3000:]
        assert "another process of the cluster died" in err0, err0[-3000:]


def test_cluster_spec_errors():
    with pytest.raises(cluster.ClusterError, match="TF_CONFIG is not a cluster"):
        cluster._tf_cluster({"TF_CONFIG": "{not json"})
    with pytest.raises(cluster.ClusterError, match="is not in its cluster of 2"):
        cluster._tf_cluster(
            {
                "TF_CONFIG": json.dumps(
                    {
                        "cluster": {"worker": ["a:1", "b:2"]},
                        "task": {"type": "worker", "index": 2},
                    }
                )
            }
        )
    with pytest.raises(cluster.ClusterError, match="needs TF_CONFIG"):
        cluster._tf_cluster({})
    with pytest.raises(cluster.ClusterError, match="missing: KERAS_DISTRIBUTION_PR"):
        cluster._jax_cluster(
            {
                "KERAS_DISTRIBUTION_JOB_ADDRESSES": "a:1",
                "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
            }
        )
    with pytest.raises(cluster.ClusterError, match=r"in \[0, 2\), received '2'"):
        cluster._jax_cluster(
            {
                "KERAS_DISTRIBUTION_JOB_ADDRESSES": "a:1",
                "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
                "KERAS_DISTRIBUTION_PROCESS_ID": "2",
            }
        )
    spec = cluster._tf_cluster(
        {
            "TF_CONFIG": json.dumps(
                {
                    "cluster": {"chief": ["c:1"], "worker": ["a:1"]},
                    "task": {"type": "worker", "index": 0},
                }
            )
        }
    )
    assert (spec.num_processes, spec.process_id) == (2, 1)


def test_shard_rows_make_the_global_batches_again():
    order = np.random.default_rng(0).permutation(21)
    shards = [cluster.shard_rows(21, 6, 2, p, order) for p in (0, 1)]
    batches = np.concatenate(
        [np.stack(shards)[:, k * 3 : (k + 1) * 3].reshape(-1) for k in range(3)]
    )
    np.testing.assert_array_equal(batches, order[:18])


def test_bench_refuses_multi_worker_without_a_cluster(
    tmp_path, monkeypatch, tiny_dataset
):
    from fastconv.bench import BenchError, run_benchmark
    from tests.bench.conftest import tiny_config

    for name in ("TF_CONFIG", *cluster._JAX_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(BenchError, match="--distribute multi-worker: multi-worker"):
        run_benchmark(tiny_config(tmp_path, distribute="multi-worker"))
    assert not (tmp_path / "results").exists()


def test_finetune_refuses_an_unknown_distribution():
    import keras

    from fastconv import finetune

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    x = np.zeros((4, 2), "float32")
    with pytest.raises(ValueError, match="distribution must be None or 'multi-w"):
        finetune(model, x, x[:, :1], loss="mse", distribution="mirrored")
    with pytest.raises(ValueError, match="only shuffle, callbacks and verbose"):
        finetune(
            model,
            x,
            x[:, :1],
            loss="mse",
            distribution="multi-worker",
            epochs=1,
            validation_split=0.5,
        )
