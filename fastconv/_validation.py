"""Small predicates shared by the argument checks across the package.

Each caller raises its own error, naming its argument and the value received;
the predicates only say whether a value is acceptable, so that every check
accepts the same types (NumPy's integers and floats too, never a bool). The
array checks (`check_array`, `check_arrays`) raise themselves, because what is
wrong with an array (its dtype, shape, a NaN) is what the message must say."""

from __future__ import annotations

import numbers
from collections.abc import Mapping

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


def check_array(owner: str, label: str, value, shape=None, dtype=None) -> np.ndarray:
    """``value`` as an array of finite real numbers, or an error naming it.

    Args:
        owner: who checks (a class or function name), first in the message.
        label: what ``value`` is, as the message should say it (``"bias"``,
            ``"factor 'core'"``).
        value: array-like.
        shape: the required shape, if any.
        dtype: if given, the array is cast to it and must still be finite
            (a float64 1e300 overflows float32).

    Returns:
        The array (cast to ``dtype`` when given).

    Raises:
        ValueError: a value that is not an array of real numbers (ragged,
            complex, bool, string or object), a wrong shape, NaN or Inf.
    """
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{owner}: {label} must be an array of real numbers, received a "
            f"{type(value).__name__} that is not one ({exc})"
        ) from None
    if array.dtype.kind not in "iuf":
        raise ValueError(
            f"{owner}: {label} must be an array of real numbers, received dtype "
            f"{array.dtype}"
        )
    if shape is not None and array.shape != tuple(shape):
        raise ValueError(
            f"{owner}: {label} must have shape {tuple(shape)}, received shape "
            f"{array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{owner}: {label} must be finite, received NaN or Inf")
    if dtype is not None:
        with np.errstate(over="ignore"):
            array = array.astype(dtype)
        if not np.all(np.isfinite(array)):
            raise ValueError(
                f"{owner}: {label} overflows {np.dtype(dtype).name} (largest "
                f"magnitude {float(np.max(np.abs(np.asarray(value)))):.3g})"
            )
    return array


def check_arrays(
    owner: str, values: Mapping, shapes: Mapping[str, tuple], dtype=None
) -> dict[str, np.ndarray]:
    """Every factor checked with `check_array` before any is used.

    Args:
        owner: who checks, first in every message.
        values: name -> array-like; must have exactly the names of ``shapes``.
        shapes: name -> required shape.
        dtype: as for `check_array`.

    Returns:
        name -> checked array, in the order of ``shapes``.

    Raises:
        ValueError: missing or unexpected names, or a value `check_array`
            refuses (the message names the factor).
    """
    names = [str(name) for name in values]
    unknown = sorted(set(names) - set(shapes))
    missing = sorted(set(shapes) - set(names))
    if unknown or missing:
        raise ValueError(
            f"{owner}: factors must have exactly the names {sorted(shapes)}, "
            f"received factors with names {sorted(names)} (missing {missing}, "
            f"unexpected {unknown})"
        )
    given = {str(name): value for name, value in values.items()}
    return {
        name: check_array(owner, f"factor {name!r}", given[name], shape, dtype)
        for name, shape in shapes.items()
    }
