"""Empirical variational Bayesian matrix factorisation (EVBMF) rank selection.

Implements the analytic global solution of fully observed EVBMF of Nakajima,
Sugiyama, Babacan and Tomioka (2013), with the noise variance estimated by
minimising the free energy as in Nakajima et al. (2015). Kim et al. (2016) use the
ranks it selects on the mode-2 and mode-3 unfoldings of a convolution kernel as the
Tucker-2 ranks.

For an ``L x M`` matrix (``L <= M``, else transposed) with singular values
``gamma_h`` and ``alpha = L / M``:

* ``tau_lower`` is the zero of the decreasing function
  ``Xi(tau) = Phi(tau) + Phi(tau / alpha)``, ``Phi(x) = log(1 + x) / x - 1/2``,
  and ``x_lower = (1 + tau_lower) (1 + alpha / tau_lower)``.
* The noise variance ``sigma2`` minimises, over the interval the paper bounds it
  to, ``sum_h psi(gamma_h**2 / (M sigma2))`` with ``psi(x) = x - log x`` plus, for
  ``x > x_lower``, ``psi1(x) = log(tau(x) + 1) + alpha log(tau(x) / alpha + 1)
  - tau(x)`` where ``tau(x) = (x - 1 - alpha + sqrt((x - 1 - alpha)**2 -
  4 alpha)) / 2``.
* Component ``h`` is kept when ``gamma_h > sqrt(M sigma2 x_lower)``; its EVB
  estimate is ``gamma_h / 2 (1 - (L + M) sigma2 / gamma_h**2 + sqrt((1 - (L + M)
  sigma2 / gamma_h**2)**2 - 4 L M sigma2**2 / gamma_h**4))``.

References:
    S. Nakajima, M. Sugiyama, S. D. Babacan, R. Tomioka, "Global analytic solution
    of fully-observed variational Bayesian matrix factorization", JMLR 14, 2013.
    S. Nakajima, R. Tomioka, M. Sugiyama, S. D. Babacan, "Condition for perfect
    dimensionality recovery by variational Bayesian PCA", JMLR 16, 2015.
    Y.-D. Kim et al., "Compression of deep convolutional neural networks for fast
    and low power mobile applications", ICLR 2016.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fastconv.decomposition._utils import squared_singular_values, to_unit_scale

__all__ = ["VBMFResult", "evbmf"]

_GRID_POINTS = 256
_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


@dataclasses.dataclass(frozen=True, eq=False)
class VBMFResult:
    """What EVBMF found in a matrix.

    Attributes:
        rank: number of components kept (may be 0).
        noise_variance: the estimated noise variance ``sigma2`` per entry.
        threshold: singular values strictly above it are kept.
        singular_values: the observed singular values, decreasing.
        estimated_singular_values: the EVB estimates (zero where not kept).
    """

    rank: int
    noise_variance: float
    threshold: float
    singular_values: np.ndarray
    estimated_singular_values: np.ndarray


def _phi(x: np.ndarray | float) -> np.ndarray | float:
    return np.log1p(x) / x - 0.5


def _tau_lower(alpha: float) -> float:
    """The zero of ``Phi(tau) + Phi(tau / alpha)`` (about 2.5129 for alpha = 1)."""

    def xi(tau: float) -> float:
        return _phi(tau) + _phi(tau / alpha)

    low, high = 0.0, 1.0
    while xi(high) > 0.0:
        low, high = high, 2.0 * high
    for _ in range(200):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        if xi(middle) > 0.0:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def _free_energy(
    sigma2: float, squared: np.ndarray, m: int, alpha: float, x_lower: float
) -> float:
    """The EVB free energy in ``sigma2``, up to terms that do not depend on it."""
    x = squared / (m * sigma2)
    energy = float(np.sum(x) + x.size * np.log(sigma2))
    above = x[x > x_lower]
    if above.size:
        shifted = above - 1.0 - alpha
        tau = 0.5 * (shifted + np.sqrt(np.maximum(shifted**2 - 4.0 * alpha, 0.0)))
        energy += float(np.sum(np.log1p(tau) + alpha * np.log1p(tau / alpha) - tau))
    return energy


def _minimise(function, low: float, high: float) -> float:
    """Global minimum on ``[low, high]``: a log grid, then golden-section search."""
    grid = np.geomspace(low, high, _GRID_POINTS)
    values = np.array([function(value) for value in grid])
    best = int(np.argmin(values))
    a = np.log(grid[max(best - 1, 0)])
    b = np.log(grid[min(best + 1, grid.size - 1)])
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = function(np.exp(c)), function(np.exp(d))
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = function(np.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + _GOLDEN * (b - a)
            fd = function(np.exp(d))
    candidate = float(np.exp(0.5 * (a + b)))
    return candidate if function(candidate) <= values[best] else float(grid[best])


def evbmf(matrix) -> VBMFResult:
    """Selects the rank of a noisy matrix by empirical variational Bayes.

    Args:
        matrix: a 2-D real array (any orientation).

    Returns:
        A ``VBMFResult``; ``rank`` is the number of singular values above the EVB
        threshold for the estimated noise variance.

    Raises:
        ValueError: if ``matrix`` is not a finite, real 2-D array with no empty
            axis, or so large that its noise variance overflows float64.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> low_rank = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 100))
        >>> evbmf(3 * low_rank + rng.normal(size=(40, 100))).rank
        3
    """
    try:
        array = np.asarray(matrix)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"matrix must be a 2-D array of real numbers, received a "
            f"{type(matrix).__name__} that is not one ({exc})"
        ) from None
    if array.dtype.kind not in "iuf":
        raise ValueError(
            "matrix must be a 2-D array of real numbers, received matrix with "
            f"dtype {array.dtype}"
        )
    array = array.astype(np.float64)
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(
            f"matrix must be a non-empty 2-D array, received matrix with shape "
            f"{array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("matrix must be finite, received matrix containing NaN or Inf")
    # The rank does not depend on the scale; the Gram matrix of a 1e300 matrix
    # overflows and that of a 1e-300 one underflows, so work at unit scale.
    array, exponent = to_unit_scale(array)
    result = _evbmf(array)
    with np.errstate(over="ignore"):
        result = VBMFResult(
            result.rank,
            float(np.ldexp(result.noise_variance, 2 * exponent)),
            float(np.ldexp(result.threshold, exponent)),
            np.ldexp(result.singular_values, exponent),
            np.ldexp(result.estimated_singular_values, exponent),
        )
    if not np.isfinite(result.noise_variance):
        raise ValueError(
            "matrix is too large for its noise variance to be a float64 (largest "
            f"magnitude {float(np.max(np.abs(matrix))):.3g}); scale it down"
        )
    return result


def _evbmf(array: np.ndarray) -> VBMFResult:
    """`evbmf` on a checked float64 matrix."""
    length, m = sorted(array.shape)
    squared = squared_singular_values(array)
    singular = np.sqrt(squared)
    total = float(np.sum(squared))
    if total == 0.0:
        zeros = np.zeros_like(singular)
        return VBMFResult(0, 0.0, 0.0, singular, zeros)

    alpha = length / m
    tau_lower = _tau_lower(alpha)
    x_lower = (1.0 + tau_lower) * (1.0 + alpha / tau_lower)

    # The EVB rank never exceeds ceil(L / (1 + alpha)) - 1, which bounds sigma2
    # from below; the total energy bounds it from above.
    max_rank = min(int(np.ceil(length / (1.0 + alpha))) - 1, length)
    upper = total / (length * m)
    lower = max(
        squared[max_rank] / (m * x_lower),
        float(np.mean(squared[max_rank:])) / m,
        upper * 1e-12,
    )
    if lower >= upper:
        sigma2 = upper
    else:
        sigma2 = _minimise(
            lambda value: _free_energy(value, squared, m, alpha, x_lower), lower, upper
        )

    threshold = float(np.sqrt(m * sigma2 * x_lower))
    kept = singular > threshold
    estimated = np.zeros_like(singular)
    if np.any(kept):
        gamma = singular[kept]
        shrink = 1.0 - (length + m) * sigma2 / gamma**2
        estimated[kept] = (
            0.5
            * gamma
            * (
                shrink
                + np.sqrt(
                    np.maximum(shrink**2 - 4.0 * length * m * sigma2**2 / gamma**4, 0)
                )
            )
        )
    return VBMFResult(int(np.sum(kept)), float(sigma2), threshold, singular, estimated)
