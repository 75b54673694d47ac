"""One rank convention for every decomposition, and the formulas behind it.

A rank argument is one of:

* an int: the exact rank (for Tucker also a pair ``(R_in, R_out)``; a single int
  is used for both);
* a float in ``(0, 1]``: the fraction of the original ``k_h k_w C_in C_out``
  parameters to keep, solved for the largest rank within that budget (Tucker keeps
  ``R_in / R_out`` proportional to ``C_in / C_out``);
* ``"energy:<fraction>"``: the smallest rank keeping that fraction of the spectral
  energy (sum of squared singular values) of the unfolding(s) the method
  truncates;
* ``"vbmf"``: the rank chosen by empirical variational Bayesian matrix
  factorisation (``vbmf.evbmf``) on the same unfolding(s).

The unfoldings behind ``"energy:..."`` and ``"vbmf"``:

* ``"tucker"``: the mode-2 (``C_in``) and mode-3 (``C_out``) unfoldings give
  ``R_in`` and ``R_out`` (Kim et al. 2016);
* ``"cp"``: the larger of those two ranks, as a CP rank is at least every
  multilinear rank;
* ``"factorized"``: the ``(k_h C_in, k_w C_out)`` matrix of Jaderberg's scheme 2;
* ``"separable"``: ``"energy:"`` pools the per-input-channel spectra (the error of
  depth multiplier ``D`` is the sum of the per-channel tails); ``"vbmf"`` uses the
  ``(k_h k_w, C_in C_out)`` spatial unfolding, whose rank bounds every
  per-channel rank.

Every resolved rank is clamped to ``[1, max_rank]`` with a ``RankClampedWarning``
naming the bound.
"""

from __future__ import annotations

import math
import numbers
import re
import warnings
from collections.abc import Sequence

import numpy as np

from fastconv._validation import is_int as _is_int
from fastconv.decomposition import _tensorly
from fastconv.decomposition._utils import (
    check_kernel,
    squared_singular_values,
    svd,
    to_unit_scale,
)
from fastconv.decomposition.vbmf import evbmf

__all__ = [
    "METHODS",
    "RankClampedWarning",
    "max_rank",
    "params_for_rank",
    "resolve_rank",
]

METHODS = ("cp", "tucker", "factorized", "separable")
_ENERGY = re.compile(r"energy:(.+)")


class RankClampedWarning(UserWarning):
    """A requested rank was outside ``[1, max_rank]`` and has been clamped."""


def _rank_error(rank, method: str) -> ValueError:
    forms = "a positive int"
    if method == "tucker":
        forms += " or a pair of positive ints"
    return ValueError(
        f"rank must be {forms}, a float in (0, 1], 'vbmf' or 'energy:<fraction>', "
        f"received rank={rank!r}"
    )


def _check_method(method) -> str:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(
            f"method must be one of {', '.join(map(repr, METHODS))}, "
            f"received method={method!r}"
        )
    return method


def _check_shape(shape) -> tuple[int, int, int, int]:
    if (
        not isinstance(shape, Sequence)
        or isinstance(shape, str)
        or len(shape) != 4
        or not all(_is_int(size) and size > 0 for size in shape)
    ):
        raise ValueError(
            "kernel_shape must be 4 positive ints (k_h, k_w, C_in, C_out), "
            f"received kernel_shape={shape!r}"
        )
    return tuple(int(size) for size in shape)


def max_rank(shape: Sequence[int], method: str) -> int | tuple[int, int]:
    """The largest meaningful rank of a kernel shape for a method.

    Args:
        shape: ``(k_h, k_w, C_in, C_out)``.
        method: ``"cp"``, ``"tucker"``, ``"factorized"`` or ``"separable"``.

    Returns:
        ``prod(shape) // max(shape)`` for CP, ``(C_in, C_out)`` for Tucker,
        ``min(k_h C_in, k_w C_out)`` for factorized and ``min(k_h k_w, C_out)``
        for separable (the ranks at which each is exact, CP's being a bound).

    Raises:
        ValueError: for a bad shape or method.
    """
    kh, kw, c_in, c_out = _check_shape(shape)
    method = _check_method(method)
    if method == "cp":
        return math.prod((kh, kw, c_in, c_out)) // max(kh, kw, c_in, c_out)
    if method == "tucker":
        return c_in, c_out
    if method == "factorized":
        return min(kh * c_in, kw * c_out)
    return min(kh * kw, c_out)


def params_for_rank(shape: Sequence[int], method: str, rank) -> int:
    """Number of parameters of the factors at a given rank.

    Args:
        shape: ``(k_h, k_w, C_in, C_out)``.
        method: ``"cp"``, ``"tucker"``, ``"factorized"`` or ``"separable"``.
        rank: a positive int (Tucker: an int or a pair ``(R_in, R_out)``).

    Returns:
        ``R (C_in + k_h + k_w + C_out)`` for CP,
        ``C_in R_in + k_h k_w R_in R_out + R_out C_out`` for Tucker,
        ``M (k_h C_in + k_w C_out)`` for factorized and
        ``D C_in (k_h k_w + C_out)`` for separable (no bias).

    Raises:
        ValueError: for a bad shape, method or rank.
    """
    kh, kw, c_in, c_out = _check_shape(shape)
    method = _check_method(method)
    if method == "tucker":
        r_in, r_out = _exact_tucker_rank(rank)
        return c_in * r_in + kh * kw * r_in * r_out + r_out * c_out
    if not (_is_int(rank) and rank > 0):
        raise ValueError(f"rank must be a positive int, received rank={rank!r}")
    rank = int(rank)
    if method == "cp":
        return rank * (c_in + kh + kw + c_out)
    if method == "factorized":
        return rank * (kh * c_in + kw * c_out)
    return rank * c_in * (kh * kw + c_out)


def _exact_tucker_rank(rank) -> tuple[int, int]:
    if _is_int(rank) and rank > 0:
        return int(rank), int(rank)
    if (
        isinstance(rank, (tuple, list))
        and len(rank) == 2
        and all(_is_int(value) and value > 0 for value in rank)
    ):
        return int(rank[0]), int(rank[1])
    raise ValueError(
        "rank must be a positive int or a pair of positive ints, "
        f"received rank={rank!r}"
    )


def _from_fraction(
    fraction: float, shape: tuple[int, int, int, int], method: str
) -> int | tuple[int, int]:
    kh, kw, c_in, c_out = shape
    budget = fraction * kh * kw * c_in * c_out
    if method == "tucker":
        # C_in a C_in + k_h k_w (a C_in)(a C_out) + a C_out C_out = budget.
        quadratic = kh * kw * c_in * c_out
        linear = c_in**2 + c_out**2
        scale = (-linear + math.sqrt(linear**2 + 4 * quadratic * budget)) / (
            2 * quadratic
        )
        return _floor(scale * c_in), _floor(scale * c_out)
    return _floor(budget / params_for_rank(shape, method, 1))


def _floor(value: float) -> int:
    # The small slack keeps e.g. 0.5 * 40 / 4 from flooring to 4.
    return int(math.floor(value * (1 + 1e-12)))


def _energy_rank(squared: np.ndarray, fraction: float) -> int:
    total = float(np.sum(squared))
    if total == 0.0:
        return 1
    kept = np.cumsum(squared) / total
    return int(np.searchsorted(kept, fraction * (1 - 1e-12)) + 1)


def _spectral_rank(kernel: np.ndarray, method: str, rule) -> int | tuple[int, int]:
    """Rank from a spectrum rule: ``rule`` maps a matrix to an int."""
    kh, kw, c_in, c_out = kernel.shape
    if method in ("tucker", "cp"):
        ranks = rule(_tensorly.unfold(kernel, 2)), rule(_tensorly.unfold(kernel, 3))
        return ranks if method == "tucker" else max(ranks)
    if method == "factorized":
        return rule(kernel.transpose(0, 2, 1, 3).reshape(kh * c_in, kw * c_out))
    return rule(kernel.reshape(kh * kw, c_in * c_out))


def _separable_energy_rank(kernel: np.ndarray, fraction: float) -> int:
    kh, kw, c_in, c_out = kernel.shape
    per_channel = kernel.transpose(2, 0, 1, 3).reshape(c_in, kh * kw, c_out)
    squared = svd(per_channel, compute_uv=False) ** 2
    return _energy_rank(np.sum(squared, axis=0), fraction)


def _clamp(value: int, high: int, rank, method: str, shape, what: str = "rank") -> int:
    if value > high:
        warnings.warn(
            f"rank={rank!r} gives a {method} {what} of {value}, above the maximum "
            f"{high} for a kernel of shape {shape}; using {high}",
            RankClampedWarning,
            stacklevel=3,
        )
        return high
    if value < 1:
        warnings.warn(
            f"rank={rank!r} gives a {method} {what} of {value}; using the minimum 1 "
            f"(the maximum is {high} for a kernel of shape {shape})",
            RankClampedWarning,
            stacklevel=3,
        )
        return 1
    return value


def resolve_rank(rank, kernel_shape_or_kernel, method: str) -> int | tuple[int, int]:
    """Turns any rank argument into concrete rank(s) for a kernel.

    Args:
        rank: an int (Tucker: or a pair), a float in ``(0, 1]`` (fraction of the
            original parameters), ``"energy:<fraction>"`` or ``"vbmf"``; see the
            module docstring.
        kernel_shape_or_kernel: the kernel ``(k_h, k_w, C_in, C_out)`` itself, or
            only its shape as a tuple or list (enough for int and float ranks).
        method: ``"cp"``, ``"tucker"``, ``"factorized"`` or ``"separable"``.

    Returns:
        An int, or ``(R_in, R_out)`` for Tucker, within ``[1, max_rank]``.

    Raises:
        ValueError: naming the argument and the value received, for an unknown
            method, a malformed rank (bools are not ints), a bad kernel or shape,
            or a spectrum rule given only a shape.

    Example:
        >>> resolve_rank(0.25, (3, 3, 64, 64), "cp")
        68
        >>> resolve_rank(16, (3, 3, 64, 128), "tucker")
        (16, 16)
    """
    method = _check_method(method)
    if isinstance(kernel_shape_or_kernel, (tuple, list)):
        kernel = None
        shape = _check_shape(kernel_shape_or_kernel)
    else:
        kernel = check_kernel(kernel_shape_or_kernel, "kernel_shape_or_kernel")
        # The rules are scale-free; at unit scale no Gram matrix over- or
        # underflows (a 1e300 kernel's failed in eigh, a 1e-300 one's was 0).
        kernel, _ = to_unit_scale(kernel)
        shape = kernel.shape

    if _is_int(rank) or (method == "tucker" and isinstance(rank, (tuple, list))):
        try:
            value = _exact_tucker_rank(rank) if method == "tucker" else int(rank)
        except ValueError:
            raise _rank_error(rank, method) from None
        if method != "tucker" and value < 1:
            raise _rank_error(rank, method)
    elif isinstance(rank, numbers.Real) and not isinstance(rank, (bool, np.bool_)):
        if not 0.0 < float(rank) <= 1.0:
            raise _rank_error(rank, method)
        value = _from_fraction(float(rank), shape, method)
    elif isinstance(rank, str) and (rank == "vbmf" or _ENERGY.fullmatch(rank)):
        if rank != "vbmf":
            try:
                fraction = float(_ENERGY.fullmatch(rank).group(1))
            except ValueError:
                raise _rank_error(rank, method) from None
            if not 0.0 < fraction <= 1.0:
                raise _rank_error(rank, method)
        if kernel is None:
            raise ValueError(
                f"rank={rank!r} depends on the kernel's values: pass the kernel, "
                f"not only its shape {shape}"
            )
        if rank == "vbmf":
            value = _spectral_rank(kernel, method, lambda matrix: evbmf(matrix).rank)
        else:
            if method == "separable":
                value = _separable_energy_rank(kernel, fraction)
            else:
                value = _spectral_rank(
                    kernel,
                    method,
                    lambda matrix: _energy_rank(
                        squared_singular_values(matrix), fraction
                    ),
                )
    else:
        raise _rank_error(rank, method)

    high = max_rank(shape, method)
    if method == "tucker":
        return (
            _clamp(value[0], high[0], rank, method, shape, "R_in"),
            _clamp(value[1], high[1], rank, method, shape, "R_out"),
        )
    return _clamp(value, high, rank, method, shape)
