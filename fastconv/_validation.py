"""Small predicates shared by the argument checks across the package.

Each caller raises its own error, naming its argument and the value received;
these only say whether a value is acceptable, so that every check accepts the
same types (NumPy's integers and floats too, never a bool)."""

from __future__ import annotations

import numbers

import numpy as np


def is_int(value) -> bool:
    """An integer (Python's or NumPy's), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(
        value, (bool, np.bool_)
    )


def is_int_at_least(value, low: int) -> bool:
    """An integer (``is_int``) no smaller than ``low``."""
    return is_int(value) and bool(value >= low)


def is_number(value) -> bool:
    """A real number (Python's or NumPy's), not a bool; NaN included."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
