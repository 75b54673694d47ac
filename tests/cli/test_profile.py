"""``fastconv profile``: shapes, memory, outputs and bad files, checked first."""

import pytest

from fastconv.cli import _args
from fastconv.cli._errors import UsageError
from fastconv.profile import ProfileResult
from tests.cli.checks import assert_user_error, run, snapshot, tiny_model

FAST = ("--warmup", "0", "--repeats", "1", "--jit", "off", "--batch-size", "2")


def profile(capsys, workdir, *extra, model="model.keras"):
    before = snapshot(workdir)
    code, out, err = run(capsys, "profile", workdir / model, *FAST, *extra)
    if code == 2:
        assert snapshot(workdir) == before
    return code, out, err


@pytest.fixture(scope="module")
def unknown_sizes(tmp_path_factory):
    path = tmp_path_factory.mktemp("unknown") / "any.keras"
    tiny_model(spatial=(None, None)).save(path)
    return path


def test_unknown_input_sizes_need_input_shape(unknown_sizes, capsys):
    code, _, err = run(capsys, "profile", unknown_sizes, *FAST)
    assert_user_error(code, err, "--input-shape", "unknown sizes")


def test_unknown_input_sizes_with_input_shape(unknown_sizes, capsys):
    code, out, _ = run(
        capsys, "profile", unknown_sizes, *FAST, "--input-shape", "8,8,3"
    )
    assert code == 0 and "batch 2" in out


def test_a_huge_batch_is_refused_before_any_allocation(workdir, capsys):
    code, _, err = profile(capsys, workdir, "--batch-size", "1000000000")
    assert_user_error(code, err, "--batch-size", "available", "1000000000")


def test_the_memory_check_counts_the_largest_activation(workdir, capsys, monkeypatch):
    # Input 8x8x3 and the largest activation 8x8x4, in float32: 1,792 bytes.
    monkeypatch.setattr(_args, "available_memory", lambda: 1792 * 10 - 1)
    code, _, err = profile(capsys, workdir, "--batch-size", "10")
    assert_user_error(code, err, "--batch-size", "1,792 bytes an example")


def test_unknown_memory_is_not_a_reason_to_refuse(monkeypatch):
    monkeypatch.setattr(_args, "available_memory", lambda: None)
    _args.check_batch_memory("--batch-size", 10**12, 10**6)


def test_memory_is_said_in_binary_units():
    with pytest.raises(UsageError, match=r"1\.6 TiB .* than the 2\.0 GiB available"):
        _args.check_batch_memory("--batch-size", 10**9, 1792, available=2 * 2**30)


@pytest.mark.parametrize(
    "flag, value",
    [("--warmup", "-1"), ("--repeats", "0"), ("--repeats", "x"), ("--batch-size", "")],
)
def test_bad_counts(workdir, capsys, flag, value):
    code, _, err = profile(capsys, workdir, flag, value)
    assert_user_error(code, err, flag)


@pytest.mark.parametrize("shape", ["8,8", "8,a,3", "0,8,3", ","])
def test_bad_input_shape(workdir, capsys, shape):
    code, _, err = profile(capsys, workdir, "--input-shape", shape)
    assert_user_error(code, err, "--input-shape", repr(shape))


@pytest.mark.parametrize("flag", ["--json", "--png"])
def test_outputs_in_a_missing_folder(workdir, capsys, flag):
    name = f"p{flag.replace('--', '.')}"
    code, out, err = profile(capsys, workdir, flag, workdir / "nodir" / name)
    assert_user_error(code, err, flag, "does not exist")
    assert out == ""


def test_an_existing_output_is_kept_without_force(workdir, capsys):
    (workdir / "p.json").write_text("keep")
    code, _, err = profile(capsys, workdir, "--json", workdir / "p.json")
    assert_user_error(code, err, "--json", "already exists")


@pytest.mark.parametrize("flag, suffix", [("--json", ".json"), ("--png", ".png")])
@pytest.mark.parametrize("name", ["p.jpg", "p.txt", "model.keras"])
def test_an_output_of_another_suffix_is_refused_even_with_force(
    workdir, capsys, flag, suffix, name
):
    before = snapshot(workdir)
    code, out, err = profile(capsys, workdir, flag, workdir / name, "--force")
    assert_user_error(code, err, flag, f"must end in {suffix}", name)
    assert out == ""
    assert snapshot(workdir) == before


def test_json_is_written_before_the_png_and_a_failed_png_leaves_nothing(
    workdir, capsys, monkeypatch
):
    def fail(self, path):
        raise OSError(13, "Permission denied", str(path))

    monkeypatch.setattr(ProfileResult, "plot", fail)
    argv = ["--json", workdir / "p.json", "--png", workdir / "p.png"]
    code, _, err = run(capsys, "profile", workdir / "model.keras", *FAST, *argv)
    assert_user_error(code, err, f"{workdir / 'p.png'}: Permission denied")
    assert sorted(p.name for p in workdir.iterdir()) == ["model.keras", "p.json"]


def test_force_replaces_an_existing_json(workdir, capsys):
    (workdir / "p.json").write_text("old")
    code, _, _ = profile(capsys, workdir, "--json", workdir / "p.json", "--force")
    assert code == 0 and '"fastconv.profile"' in (workdir / "p.json").read_text()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"\x89HDF junk"])
def test_corrupt_models(workdir, capsys, content):
    (workdir / "bad.keras").write_bytes(content)
    code, _, err = profile(capsys, workdir, model="bad.keras")
    assert_user_error(code, err, "MODEL.keras", "bad.keras")
