"""The shared array reader, `fastconv.cli._args.load_array`: a .npy file, or
with ``npz_name`` an .npz archive's array of that name; every bad file is a
`UsageError` naming the argument and the file."""

from __future__ import annotations

import numpy as np
import pytest

from fastconv.cli import _args
from fastconv.cli._errors import UsageError


def test_an_npz_array_is_read_by_its_name(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.arange(6.0).reshape(2, 3), y=np.zeros(2))
    x = _args.load_array("--data", path, npz_name="x")
    np.testing.assert_array_equal(x, np.arange(6.0).reshape(2, 3))


def test_a_npy_file_is_read_whether_or_not_an_npz_name_is_given(tmp_path):
    path = tmp_path / "data.npy"
    np.save(path, np.ones((2, 3), "float32"))
    for options in ({}, {"npz_name": "x"}):
        np.testing.assert_array_equal(
            _args.load_array("--data", path, **options), np.ones((2, 3))
        )


def write_text(path, text="not numpy"):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "name, write, options, problem",
    [
        (
            "data.npz",
            lambda p: np.savez(p, x=np.zeros(2)),
            {},
            "is an .npz archive, not one .npy array",
        ),
        (
            "data.npz",
            lambda p: np.savez(p, y=np.zeros(2)),
            {"npz_name": "x"},
            "must hold an array named x; it holds ['y']",
        ),
        (
            "data.npz",
            lambda p: np.savez(p, x=np.array(["a", "b"])),
            {"npz_name": "x"},
            "holds x of <U1 values, not numbers",
        ),
        (
            "data.npz",
            lambda p: np.savez(p, x=np.array([{}, None], dtype=object)),
            {"npz_name": "x"},
            "holds Python objects (pickled), not numbers",
        ),
        ("data.npz", write_text, {"npz_name": "x"}, "is not a NumPy .npy or .npz file"),
        ("data.npy", write_text, {}, "is not a NumPy .npy array file"),
    ],
)
def test_a_bad_array_file_names_the_argument_and_the_file(
    tmp_path, name, write, options, problem
):
    path = tmp_path / name
    write(path)
    with pytest.raises(UsageError) as raised:
        _args.load_array("--data", path, **options)
    message = str(raised.value)
    assert message.startswith("--data ") and problem in message, message
    assert str(path) in message
