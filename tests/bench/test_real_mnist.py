"""The baseline trains on real MNIST to well above chance (10 %)."""

import pytest

from fastconv.bench import BenchConfig, run_benchmark


@pytest.mark.slow
def test_baseline_learns_real_mnist(tmp_path):
    results = run_benchmark(
        BenchConfig(
            datasets=("mnist",),
            variants=["baseline"],
            epochs=1,
            train_subset=10000,
            test_subset=1000,
            repeats=2,
            warmup=1,
            out=tmp_path,
            progress=False,
        )
    )
    info = results["datasets"]["mnist"]
    assert (info["train_examples"], info["train_available"]) == (10000, 60000)
    assert (info["test_examples"], info["test_available"]) == (1000, 10000)
    assert info["input_shape"] == [28, 28, 1] and info["num_classes"] == 10
    assert info["variants"]["baseline"]["accuracy"] > 0.9
