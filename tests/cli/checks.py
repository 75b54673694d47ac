"""Helpers for the CLI tests: tiny saved models, file snapshots, error checks."""

from __future__ import annotations

from pathlib import Path

import keras

from fastconv import cli


def tiny_model(spatial=(8, 8)) -> keras.Model:
    """Two 3x3 convolutions on an 8x8x3 input (or unknown sizes: (None, None))."""
    inputs = keras.Input((*spatial, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", name="c2")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


def run(capsys, *argv) -> tuple[int, str, str]:
    """``fastconv ARGV`` in this process: the exit code, stdout and stderr."""
    code = cli.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_user_error(code: int, err: str, *names: str) -> None:
    """Exit 2 and one line on stderr, without a traceback, naming ``names``."""
    assert code == 2, err
    assert "Traceback" not in err
    assert err.startswith("fastconv") and err.endswith("\n")
    assert err.count("\n") == 1, err
    for name in names:
        assert str(name) in err, (name, err)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and modification time (ns)."""
    return {
        str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
