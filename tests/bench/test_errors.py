"""Bad configurations fail with a clear error before any training starts."""

import pytest

from fastconv.bench import device, runner
from fastconv.bench.config import BenchError
from fastconv.bench.runner import run_benchmark

from .conftest import TINY_TEST, TINY_TRAIN, tiny_config, tiny_data


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if any model is trained; counts the data loads."""
    loads = []

    def fit(*args, **kwargs):
        pytest.fail("a model was trained before the error")

    def load(name):
        loads.append(name)
        return tiny_data(name)

    monkeypatch.setattr(runner, "_fit_epoch", fit)
    return load, loads


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            dict(datasets=("tiny", "nope")),
            r"unknown dataset\(s\) 'nope'; valid: .*mnist",
        ),
        (dict(datasets=()), "no datasets given; valid: "),
        (
            dict(variants=["cp", "nope"]),
            r"unknown variant\(s\) 'nope'; valid: .*tucker",
        ),
        (dict(variants=[]), "no variants given"),
        (dict(epochs=0), "epochs must be an integer >= 1, received 0"),
        (dict(epochs=1.5), "epochs must be an integer >= 1, received 1.5"),
        (dict(repeats=0), "repeats must be an integer >= 1, received 0"),
        (dict(batch_size=True), "batch-size must be an integer >= 1, received True"),
        (dict(inference_batch_size=-1), "inference-batch-size .* received -1"),
        (dict(warmup=-1), "warmup must be an integer >= 0, received -1"),
        (dict(train_subset=0), "train-subset must be an integer >= 1, received 0"),
        (dict(test_subset={"tiny": "x"}), "test-subset .* received 'x'"),
        (dict(finetune_epochs=0), "finetune-epochs .* received 0"),
        (dict(finetune_learning_rate=0.0), "learning rate must be > 0, received 0.0"),
        (dict(precision="float16"), "precision must be one of .* received 'float16'"),
        (dict(device="tpu"), "device must be one of auto, cpu, gpu, received 'tpu'"),
        (dict(distribute="ring"), "distribute must be one of none, mirrored, .*'ring'"),
        (dict(jit="yes"), "jit must be True, False or None, received 'yes'"),
    ],
)
def test_bad_option_fails_before_loading_anything(
    tiny_dataset, tmp_path, no_training, overrides, message
):
    load, loads = no_training
    with pytest.raises(BenchError, match=message):
        run_benchmark(tiny_config(tmp_path, **overrides), load=load)
    assert loads == []
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            dict(train_subset=TINY_TRAIN + 1),
            f"tiny: train subset of {TINY_TRAIN + 1} is larger than the data "
            f"\\({TINY_TRAIN} examples\\)",
        ),
        (
            dict(test_subset={"tiny": 10**6}),
            f"tiny: test subset of 1,000,000 is larger than the data "
            f"\\({TINY_TEST} examples\\)",
        ),
        (
            dict(inference_batch_size=TINY_TEST + 16),
            f"inference batch of {TINY_TEST + 16} is larger than the {TINY_TEST} test",
        ),
    ],
)
def test_sizes_larger_than_the_data_fail_before_training(
    tiny_dataset, tmp_path, no_training, overrides, message
):
    load, loads = no_training
    with pytest.raises(BenchError, match=message):
        run_benchmark(tiny_config(tmp_path, **overrides), load=load)
    assert loads == ["tiny"]
    assert not (tmp_path / "results").exists()  # the folder it made is removed


def test_refused_run_keeps_an_existing_output_folder(
    tiny_dataset, tmp_path, no_training
):
    load, _ = no_training
    (tmp_path / "results").mkdir()
    with pytest.raises(BenchError, match="larger than the data"):
        run_benchmark(tiny_config(tmp_path, train_subset=10**6), load=load)
    assert (tmp_path / "results").is_dir()


def test_unwritable_output_directory(tiny_dataset, tmp_path, no_training):
    load, loads = no_training
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "results"
    with pytest.raises(BenchError, match=f"output directory '{out}' is not writable"):
        run_benchmark(tiny_config(tmp_path, out=out), load=load)
    assert loads == []


def test_gpu_requested_but_none_visible_names_the_backend(
    tiny_dataset, tmp_path, no_training, monkeypatch
):
    load, loads = no_training
    monkeypatch.setattr(device, "_gpus", lambda backend: ([], f"{backend} looked"))
    backend = device.keras.backend.backend()
    with pytest.raises(
        BenchError, match=f"--device gpu: the {backend} backend sees no GPU"
    ):
        run_benchmark(tiny_config(tmp_path, device="gpu"), load=load)
    assert loads == []


def test_mirrored_on_a_backend_without_data_parallel(
    tiny_dataset, tmp_path, no_training, monkeypatch
):
    load, loads = no_training
    monkeypatch.setattr(device.keras.backend, "backend", lambda: "torch")
    with pytest.raises(BenchError, match="not supported on the torch backend"):
        run_benchmark(tiny_config(tmp_path, distribute="mirrored"), load=load)
    assert loads == []


def test_bench_error_is_a_value_error():
    assert issubclass(BenchError, ValueError)
