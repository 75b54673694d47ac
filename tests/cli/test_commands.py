"""``fastconv`` as a whole, ``demo``, ``bench`` and ``data``: the one error path."""

import os
import stat

import pytest

import fastconv.bench
from fastconv import cli
from fastconv._files import write_atomically
from fastconv.cli import _args
from fastconv.cli._errors import UsageError
from tests.cli.checks import assert_user_error, run, snapshot


def test_usage_error_message():
    exc = UsageError("--size", "x", "must be an integer >= 1")
    assert str(exc) == "--size must be an integer >= 1, received 'x'"
    assert (exc.argument, exc.value) == ("--size", "x")
    assert str(UsageError("--input-shape", None, "is needed")) == (
        "--input-shape is needed"
    )


@pytest.mark.parametrize(
    "argv, names",
    [
        ([], ["COMMAND"]),
        (["train"], ["invalid choice: 'train'"]),
        (["demo", "--bogus"], ["unrecognized arguments: --bogus"]),
        (["convert"], ["MODEL.keras"]),
        (["data"], ["COMMAND"]),
        (["data", "fetch", "imagenet"], ["NAME", "imagenet"]),
    ],
)
def test_argparse_errors_are_one_line(capsys, argv, names):
    code, _, err = run(capsys, *argv)
    assert_user_error(code, err, *names)


def test_help_exits_0(capsys):
    code, out, err = run(capsys, "--help")
    assert code == 0 and "--verbose" in out and err == ""


def test_verbose_is_a_global_flag():
    args = cli.build_parser().parse_args(["--verbose", "demo"])
    assert args.verbose and args.command == "demo"
    assert cli.build_parser().parse_args(["demo", "--verbose"]).verbose
    assert cli.build_parser().parse_args(["demo"]).verbose is False


def test_one_positive_int_type():
    assert _args.positive_int("3") == 3
    assert _args.non_negative_int("0") == 0
    for text in ("0", "-1", "2.5", "", "three"):
        with pytest.raises(Exception, match="must be"):
            _args.positive_int(text)


# -------------------------------------------------------------------- demo
@pytest.mark.parametrize(
    "flag, value",
    [
        ("--channels", "0"),
        ("--size", "-2"),
        ("--kernel", "five"),
        ("--batch-size", "0"),
        ("--repeats", "1e3"),
    ],
)
def test_demo_bad_counts(capsys, flag, value):
    code, _, err = run(capsys, "demo", flag, value)
    assert_user_error(code, err, flag, value)


def test_demo_huge_batch_is_refused(capsys):
    code, _, err = run(capsys, "demo", "--batch-size", "10000000", "--size", "512")
    assert_user_error(code, err, "--batch-size", "available")


# ------------------------------------------------------------------- bench
@pytest.fixture
def no_benchmark(monkeypatch):
    def fail(config):
        pytest.fail("the benchmark ran")

    monkeypatch.setattr(fastconv.bench, "run_benchmark", fail)


def test_bench_keeps_earlier_results_without_force(tmp_path, capsys, no_benchmark):
    (tmp_path / "results.json").write_text("{}")
    before = snapshot(tmp_path)
    code, _, err = run(capsys, "bench", "--out", tmp_path)
    assert_user_error(code, err, "--out", "results.json", "--force")
    assert snapshot(tmp_path) == before


def test_bench_force_runs_into_earlier_results(tmp_path, capsys, monkeypatch):
    (tmp_path / "results.json").write_text("{}")
    seen = []

    def fake(config):
        seen.append(config.out)
        raise ValueError("stopped here")

    monkeypatch.setattr(fastconv.bench, "run_benchmark", fake)
    code, _, err = run(capsys, "bench", "--out", tmp_path, "--force")
    assert_user_error(code, err, "stopped here")
    assert seen == [str(tmp_path)]


@pytest.mark.parametrize(
    "argv, names",
    [
        (["--epochs", "0"], ["epochs"]),
        (["--train-subset", "many"], ["--train-subset", "'many'"]),
        (["--precision", "float8"], ["--precision", "float8"]),
        (["--dataset", "imagenet"], ["imagenet"]),
        (["--dataset", "mnist", "mnist"], ["'mnist'", "more than once"]),
    ],
)
def test_bench_bad_options_stop_before_any_work(tmp_path, capsys, argv, names):
    out = tmp_path / "run"
    code, _, err = run(capsys, "bench", *argv, "--out", out, "--no-progress")
    assert_user_error(code, err, *names)
    assert not out.exists()


# -------------------------------------------------------------------- data
@pytest.mark.parametrize("command", ["list", "fetch"])
def test_data_cache_dir_that_is_a_file(tmp_path, capsys, command):
    cache = tmp_path / "cache"
    cache.write_text("a file")
    argv = ["data", command, "--cache-dir", cache]
    code, _, err = run(capsys, *(argv if command == "list" else [*argv, "mnist"]))
    assert_user_error(code, err, "--cache-dir", "not a folder")
    assert cache.read_text() == "a file"


def test_bench_out_in_a_missing_folder_exits_2_before_any_work(
    capsys, tmp_path, monkeypatch
):
    from fastconv.bench import runner

    monkeypatch.setattr(runner, "run_benchmark", lambda *a: pytest.fail("ran"))
    out = tmp_path / "a" / "b" / "c"
    code, _, err = run(capsys, "bench", "--out", out)
    assert_user_error(code, err, "--out", "folder that does not exist", str(out))
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomically_written_files_get_the_mode_of_a_plain_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = tmp_path / "out.json"
        write_atomically(path, lambda tmp: tmp.write_text("{}"))
        plain = tmp_path / "plain.json"
        plain.write_text("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
