"""The predicates every argument check shares (fastconv/_validation.py)."""

import math

import numpy as np
import pytest

from fastconv._validation import (
    check_array,
    check_arrays,
    is_int,
    is_int_at_least,
    is_number,
)


@pytest.mark.parametrize("value", [0, 3, -2, np.int64(4), np.uint8(1)])
def test_is_int_accepts_python_and_numpy_integers(value):
    assert is_int(value)


@pytest.mark.parametrize("value", [True, np.bool_(False), 2.0, "3", None, [1]])
def test_is_int_rejects_bools_floats_and_the_rest(value):
    assert not is_int(value)


@pytest.mark.parametrize(
    "value, low, expected",
    [
        (1, 1, True),
        (0, 1, False),
        (0, 0, True),
        (np.int32(5), 1, True),
        (True, 0, False),
        (1.0, 1, False),
    ],
)
def test_is_int_at_least(value, low, expected):
    assert is_int_at_least(value, low) is expected


@pytest.mark.parametrize("value", [0, 1.5, -3, np.float32(0.1), np.int64(2), math.inf])
def test_is_number_accepts_reals(value):
    assert is_number(value)


@pytest.mark.parametrize("value", [True, np.bool_(True), "1", None, 1j])
def test_is_number_rejects_bools_strings_and_complex(value):
    assert not is_number(value)


def test_the_checks_accept_numpy_integers_and_name_bad_values():
    from fastconv import timing

    assert (
        len(
            timing.measure(
                lambda: None, warmup=np.int64(0), repeats=np.int64(2)
            ).samples_ns
        )
        == 2
    )
    with pytest.raises(ValueError, match=r"received repeats=True"):
        timing.measure(lambda: None, repeats=True)


@pytest.mark.parametrize(
    "value, expected",
    [
        (np.array([1.0, np.nan]), "finite"),
        (np.array([np.inf]), "finite"),
        (np.array([1 + 2j]), "real numbers, received dtype complex128"),
        (np.array([True]), "real numbers, received dtype bool"),
        (np.array(["1"]), "real numbers"),
        (np.array([None], dtype=object), "real numbers, received dtype object"),
        ([[1.0], [1.0, 2.0]], "real numbers, received a list"),
    ],
)
def test_check_array_refuses_non_real_or_non_finite_values(value, expected):
    with pytest.raises(ValueError, match=f"^Owner: factor 'w' must be .*{expected}"):
        check_array("Owner", "factor 'w'", value)


def test_check_array_shape_and_dtype():
    assert check_array("O", "x", [1, 2], shape=(2,)).dtype.kind == "i"
    assert check_array("O", "x", [1, 2], dtype="float32").dtype == np.float32
    with pytest.raises(ValueError, match=r"x must have shape \(3,\), received shape"):
        check_array("O", "x", [1, 2], shape=(3,))
    with pytest.raises(ValueError, match="x overflows float16"):
        check_array("O", "x", [1e5], dtype="float16")


def test_check_arrays_checks_every_name_before_returning():
    shapes = {"a": (2,), "b": (1,)}
    checked = check_arrays("O", {"b": [3.0], "a": [1, 2]}, shapes, "float64")
    assert list(checked) == ["a", "b"] and checked["a"].dtype == np.float64
    with pytest.raises(ValueError, match=r"missing \['b'\], unexpected \['c'\]"):
        check_arrays("O", {"a": [1, 2], "c": [1.0]}, shapes)
    with pytest.raises(ValueError, match="factor 'b' must be finite"):
        check_arrays("O", {"a": [1, 2], "b": [np.nan]}, shapes)
