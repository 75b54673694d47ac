"""The predicates every argument check shares (fastconv/_validation.py)."""

import math

import numpy as np
import pytest

from fastconv._validation import is_int, is_int_at_least, is_number


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
