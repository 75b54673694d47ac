"""``fastconv bench``: options, suites, bad input and a tiny run."""

import argparse
import json

import pytest

from fastconv import cli
from fastconv.bench import device, quick_config, runner
from fastconv.cli import _args
from fastconv.cli import bench as bench_cli
from fastconv.cli.bench import config_from_args


def parse(*argv) -> argparse.Namespace:
    return cli.build_parser().parse_args(["bench", *argv])


def test_no_options_is_the_quick_suite():
    config = config_from_args(parse())
    assert config.suite == "quick"
    assert config == quick_config(progress=True)


def test_full_is_all_three_datasets():
    config = config_from_args(parse("--full"))
    assert config.suite == "full"
    assert tuple(config.datasets) == ("mnist", "fashion_mnist", "cifar10")


def test_every_option_overrides_the_suite(tmp_path):
    config = config_from_args(
        parse(
            "--full",
            "--dataset",
            "mnist,cifar10",
            "--variants",
            "cp",
            "tucker",
            "--epochs",
            "3",
            "--train-subset",
            "all",
            "--test-subset",
            "500",
            "--repeats",
            "7",
            "--batch-size",
            "64",
            "--inference-batch-size",
            "32",
            "--precision",
            "mixed_bfloat16",
            "--no-jit",
            "--device",
            "cpu",
            "--distribute",
            "mirrored",
            "--finetune-epochs",
            "2",
            "--seed",
            "5",
            "--out",
            str(tmp_path),
            "--no-progress",
        )
    )
    assert config.suite == "full"
    assert tuple(config.datasets) == ("mnist", "cifar10")
    assert config.variants == ["cp", "tucker"]
    assert (config.epochs, config.repeats, config.seed) == (3, 7, 5)
    assert config.train_subset is None and config.test_subset == 500
    assert (config.batch_size, config.inference_batch_size) == (64, 32)
    assert config.precision == "mixed_bfloat16"
    assert config.jit is False
    assert (config.device, config.distribute) == ("cpu", "mirrored")
    assert config.finetune_epochs == 2
    assert config.out == str(tmp_path) and config.progress is False


def test_jit_and_dataset_all():
    config = config_from_args(parse("--jit", "--dataset", "all"))
    assert config.jit is True
    assert tuple(config.datasets) == ("mnist", "fashion_mnist", "cifar10")
    assert config_from_args(parse()).jit is None


def test_list_shows_datasets_and_variants(capsys):
    assert cli.main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert "datasets: mnist, fashion_mnist, cifar10" in out
    assert "converted-tucker" in out and "FactorizedConv2D" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "imagenet"], "unknown dataset(s) 'imagenet'; valid: mnist"),
        (["--variants", "fast"], "unknown variant(s) 'fast'; valid: baseline"),
        (["--epochs", "0"], "--epochs must be >= 1, received 0"),
        (["--repeats", "0"], "--repeats must be >= 1, received 0"),
        (["--batch-size", "-8"], "--batch-size must be >= 1, received -8"),
        (["--train-subset", "0"], "--train-subset must be >= 1, received 0"),
        (
            ["--epochs", "1.5"],
            "--epochs must be an integer >= 1, received '1.5'",
        ),
        (["--repeats", "many"], "--repeats must be an integer >= 1, received 'many'"),
        (
            ["--inference-batch-size", "0"],
            "--inference-batch-size must be >= 1, received 0",
        ),
        (["--finetune-epochs", "0"], "--finetune-epochs must be >= 1, received 0"),
        (["--seed", "-1"], "--seed must be >= 0, received -1"),
        (["--seed", "0x10"], "--seed must be an integer >= 0, received '0x10'"),
    ],
)
def test_bad_options_exit_2_with_the_message(monkeypatch, capsys, argv, message):
    monkeypatch.setattr(runner, "_fit_epoch", lambda *a: pytest.fail("trained"))
    assert cli.main(["bench", *argv]) == 2
    assert f"fastconv bench: error: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["many", "1.5"])
def test_subset_must_be_a_count_or_all(capsys, value):
    with pytest.raises(SystemExit):
        parse("--train-subset", value)
    message = (
        f"--train-subset must be a number of examples or 'all', received '{value}'"
    )
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "option, argv",
    [
        ("--batch-size", ["--batch-size", "1000000"]),
        ("--inference-batch-size", ["--inference-batch-size", "1000000"]),
    ],
)
def test_batch_that_cannot_fit_in_memory_exits_2_before_any_work(
    monkeypatch, capsys, tmp_path, option, argv
):
    monkeypatch.setattr(_args, "available_memory", lambda: 2**30)
    monkeypatch.setattr(runner, "run_benchmark", lambda *a: pytest.fail("ran"))
    out = tmp_path / "out"
    assert cli.main(["bench", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"fastconv bench: error: {option} needs at least" in err
    assert "1.0 GiB available, received 1000000" in err
    assert not out.exists()


def test_batch_memory_check_passes_the_default_suites(monkeypatch):
    needed = []
    monkeypatch.setattr(
        _args,
        "check_batch_memory",
        lambda option, size, per_example: needed.append((option, size, per_example)),
    )
    bench_cli._check_batch_memory(config_from_args(parse("--full")))
    (train, inference) = needed
    assert train[0] == "--batch-size" and inference[0] == "--inference-batch-size"
    # cifar10's input and its largest layer output: more than the input alone
    assert train[2] == inference[2] > 4 * 32 * 32 * 3


def test_gpu_without_gpu_exits_2_naming_the_backend(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(device, "_gpus", lambda backend: ([], "none found"))
    monkeypatch.setattr(runner, "_fit_epoch", lambda *a: pytest.fail("trained"))
    assert cli.main(["bench", "--device", "gpu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--device gpu: the" in err and "backend sees no GPU (none found)" in err


def test_unwritable_out_exits_2(capsys, tmp_path):
    (tmp_path / "file").write_text("")
    assert cli.main(["bench", "--out", str(tmp_path / "file" / "out")]) == 2
    assert "is not writable" in capsys.readouterr().err


def test_tiny_run_writes_results_and_prints_the_table(
    tiny_dataset, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    out = tmp_path / "run"
    argv = ["bench", "--dataset", "tiny", "--variants", "separable", "--epochs", "1"]
    argv += ["--train-subset", "all", "--test-subset", "all"]
    argv += ["--repeats", "2", "--batch-size", "16", "--inference-batch-size", "8"]
    argv += ["--device", "cpu", "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| separable |" in printed and f"results: {out}" in printed
    results = json.loads((out / "results.json").read_text())
    assert list(results["datasets"]["tiny"]["variants"]) == ["baseline", "separable"]
    assert results["environment"]["device_option"] == "cpu"
    assert results["config"]["suite"] == "quick"
    assert (out / "results.md").read_text() in printed
