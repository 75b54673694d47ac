"""Small predicates shared by the argument checks of layers and decompositions."""

from __future__ import annotations

import numbers

import numpy as np


def is_int(value) -> bool:
    """An integer (Python's or NumPy's), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(
        value, (bool, np.bool_)
    )
