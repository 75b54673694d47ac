"""CP (CANDECOMP/PARAFAC) decomposition of a kernel (Lebedev et al. 2015).

``kernel[h, w, c, o] ~= sum_r pointwise_in[c, r] vertical[h, r] horizontal[w, r]
pointwise_out[r, o]``: a ``1x1`` convolution into ``R`` channels, a ``k_h x 1``
and a ``1 x k_w`` depthwise convolution, and a ``1x1`` convolution out.

Alternating least squares, written for kernels rather than general tensors:

* **No Khatri-Rao product.** The matricised-tensor-times-Khatri-Rao products
  (MTTKRP) are contracted mode by mode. One sweep needs two large products, the
  kernel times the ``C_out`` factor (shared by the updates of the two spatial
  factors and the ``C_in`` factor) and the kernel times the ``C_in`` factor (for
  the ``C_out`` update); everything else is ``O(k_h k_w C R)``. TensorLy's
  ``parafac`` instead builds a ``(k_w C_in C_out, R)`` Khatri-Rao product per
  spatial mode.
* **Extrapolation.** After each sweep the step from the previous sweep is
  extended (Bro's line search, step ``n ** (1 / p)`` with ``p`` growing after
  repeated failures) and kept when it lowers the error. A kept step costs nothing
  extra: its product with the ``C_out`` factor is the one the next sweep needs.
* **Compression.** When ``R`` is below a channel count, the kernel is first
  compressed to a ``(k_h, k_w, min(C_in, R), min(C_out, R))`` core by HOSVD, the
  core is decomposed, and the expanded factors are refined on the full kernel.
* **Stopping** when a sweep lowers the relative error by less than ``tol`` of
  it; the error comes from the MTTKRP already computed, not from a
  reconstruction.
* **Precision.** Sweeps run in float32 (half the time of float64; the kernel of
  a Keras layer is float32 to begin with), and in float64 once the error is
  below 0.1 and the float32 sweeps stop improving.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fastconv.decomposition import _tensorly
from fastconv.decomposition._utils import (
    check_kernel,
    check_random_state,
    cp_to_dense,
    leading_subspace,
    relative_error,
    single_threaded,
    solve,
    to_unit_scale,
    unit_scaled,
)
from fastconv.decomposition.ranks import resolve_rank
from fastconv.decomposition.results import CPFactors
from fastconv.decomposition.tucker import (
    _FLOAT32_ABOVE,
    _check_iterations,
    _converged,
)

__all__ = ["CPAxesFactors", "cp_axes_decompose", "cp_decompose"]

_INITS = ("svd", "random")
# Extrapolation: first tried after this many sweeps; the step is
# sweep ** (1 / power), power += 1 after _MAX_FAILURES rejections in a row.
_FIRST_EXTRAPOLATION = 2
_START_POWER = 2.0
_MAX_FAILURES = 4
_RIDGE = 1e-12


def _solve(mttkrp: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """Least-squares factor update ``mttkrp @ inv(gram)`` for a symmetric ``gram``."""
    ridge = _RIDGE * float(np.trace(gram)) / gram.shape[0]
    eye = np.eye(gram.shape[0], dtype=gram.dtype)
    return solve(gram + ridge * eye, mttkrp.T).T


def _unit_columns(factor: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(factor, axis=0)
    return factor / np.where(norms > 0, norms, 1.0)


def _svd_init(tensor: np.ndarray, rank: int, rng: np.random.Generator) -> list:
    """Leading left singular vectors of each unfolding, random columns past them."""
    factors = []
    for mode, size in enumerate(tensor.shape):
        basis = leading_subspace(_tensorly.unfold(tensor, mode), min(rank, size))
        if rank > size:
            extra = _unit_columns(rng.standard_normal((size, rank - size)))
            basis = np.concatenate([basis, extra], axis=1)
        factors.append(basis)
    return factors


def _random_init(tensor: np.ndarray, rank: int, rng: np.random.Generator) -> list:
    return [_unit_columns(rng.standard_normal((size, rank))) for size in tensor.shape]


class _Kernel:
    """A 4-way tensor ``(k_h, k_w, C_in, C_out)`` laid out for the two big products,
    in the working precision of `_als`."""

    def __init__(self, tensor: np.ndarray):
        self.shape = tensor.shape
        self.norm2 = float(np.vdot(tensor, tensor))
        self._tensor = tensor
        self.dtype = None

    def use(self, dtype) -> None:
        """Lays the tensor out for products in ``dtype``."""
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return
        kh, kw, c_in, c_out = self.shape
        self.dtype = dtype
        self.by_out = self._tensor.reshape(kh * kw * c_in, c_out).astype(dtype)
        self.by_in = np.ascontiguousarray(
            self._tensor.transpose(0, 1, 3, 2), dtype=dtype
        ).reshape(kh * kw * c_out, c_in)

    def times_out(self, factor: np.ndarray) -> np.ndarray:
        """``Y[h, w, c, r] = sum_o T[h, w, c, o] factor[o, r]``."""
        kh, kw, c_in, _ = self.shape
        return (self.by_out @ factor).reshape(kh, kw, c_in, -1)

    def times_in(self, factor: np.ndarray) -> np.ndarray:
        """``Z[h, w, o, r] = sum_c T[h, w, c, o] factor[c, r]``."""
        kh, kw, _, c_out = self.shape
        return (self.by_in @ factor).reshape(kh, kw, c_out, -1)

    def error(self, inner: float, grams: list) -> float:
        """Relative error from ``<T, model>`` and the factors' Gram matrices."""
        if self.norm2 == 0.0:
            return 0.0
        grams = [np.asarray(gram, dtype=np.float64) for gram in grams]
        model2 = float(np.sum(grams[0] * grams[1] * grams[2] * grams[3]))
        return float(np.sqrt(max(self.norm2 - 2.0 * inner + model2, 0.0) / self.norm2))


def _spatial_contract(product: np.ndarray, spatial: np.ndarray) -> np.ndarray:
    """``sum_{h, w} product[h, w, :, r] spatial[h, w, r]``: ``(C, R)``."""
    return np.sum(product * spatial[:, :, None, :], axis=(0, 1))


def _als(kernel: _Kernel, factors: list, n_iter_max: int, tol: float):
    """CP-ALS with mode-by-mode MTTKRP and extrapolation, float32 then float64.

    Every product, Gram matrix and solve runs in float32 (half the time of
    float64; the kernel of a Keras layer holds float32 values to begin with).
    When the float32 sweeps stop improving with the error still above
    ``_FLOAT32_ABOVE``, float32 was enough; below it, the sweeps go on in
    float64 until they stop improving too, so that a near-exact fit is refined
    past float32's rounding and the stopping test is not misled by it (a float32
    sweep that raises the error, as an ill-conditioned solve may, ends the
    float32 phase the same way).

    Args:
        kernel: the tensor.
        factors: initial ``[vertical, horizontal, in, out]`` factors, ``(size, R)``.
        n_iter_max: most sweeps.
        tol: stop when a sweep lowers the relative error by less than this
            fraction of it.

    Returns:
        ``(factors, sweeps, error)``, the factors in float64.
    """
    kernel.use(np.float32)
    a0, a1, a2, a3 = (np.asarray(factor, dtype=kernel.dtype) for factor in factors)
    grams = [a.T @ a for a in (a0, a1, a2, a3)]
    by_out = None
    previous_factors = None
    previous_error = np.inf
    power, failures = _START_POWER, 0
    sweep = 0
    error = np.inf
    for sweep in range(1, n_iter_max + 1):
        if by_out is None:
            by_out = kernel.times_out(a3)
        contracted = np.sum(by_out * a2, axis=2)  # (k_h, k_w, R)
        a0 = _unit_columns(
            _solve(np.sum(contracted * a1, axis=1), grams[1] * grams[2] * grams[3])
        )
        grams[0] = a0.T @ a0
        a1 = _unit_columns(
            _solve(
                np.sum(contracted * a0[:, None], axis=0), grams[0] * grams[2] * grams[3]
            )
        )
        grams[1] = a1.T @ a1
        spatial = a0[:, None, :] * a1[None, :, :]
        a2 = _unit_columns(
            _solve(_spatial_contract(by_out, spatial), grams[0] * grams[1] * grams[3])
        )
        grams[2] = a2.T @ a2
        mttkrp = _spatial_contract(kernel.times_in(a2), spatial)
        a3 = _solve(mttkrp, grams[0] * grams[1] * grams[2])
        grams[3] = a3.T @ a3
        error = kernel.error(float(np.vdot(mttkrp, a3)), grams)

        by_out = None
        if previous_factors is not None and sweep > _FIRST_EXTRAPOLATION:
            step = sweep ** (1.0 / power)
            trial = [
                old + step * (new - old)
                for old, new in zip(previous_factors, (a0, a1, a2, a3), strict=True)
            ]
            trial_out = kernel.times_out(trial[3])
            trial_grams = [t.T @ t for t in trial]
            trial_spatial = trial[0][:, None, :] * trial[1][None, :, :]
            inner = float(
                np.vdot(_spatial_contract(trial_out, trial_spatial), trial[2])
            )
            trial_error = kernel.error(inner, trial_grams)
            if trial_error < error:
                a0, a1, a2, a3 = trial
                grams, by_out, error = trial_grams, trial_out, trial_error
                failures = 0
            else:
                failures += 1
                if failures == _MAX_FAILURES:
                    power, failures = power + 1.0, 0
        previous_factors = [a0, a1, a2, a3]
        converged = _converged(previous_error, error, tol)
        if converged and kernel.dtype != np.float64 and error < _FLOAT32_ABOVE:
            kernel.use(np.float64)
            a0, a1, a2, a3 = (a.astype(np.float64) for a in (a0, a1, a2, a3))
            grams = [a.T @ a for a in (a0, a1, a2, a3)]
            previous_factors = [a0, a1, a2, a3]
            by_out = None
            # The float32 estimates carry their rounding: float64 judges itself.
            error = np.inf
        elif converged:
            break
        previous_error = error
    return [np.asarray(a, dtype=np.float64) for a in (a0, a1, a2, a3)], sweep, error


def _compress(tensor: np.ndarray, rank: int):
    """HOSVD of the channel modes down to ``min(C, rank)``: ``(core, bases)``."""
    bases = [
        leading_subspace(_tensorly.unfold(tensor, mode), min(rank, tensor.shape[mode]))
        for mode in (2, 3)
    ]
    core = _tensorly.multi_mode_dot(tensor, [basis.T for basis in bases], modes=[2, 3])
    return core, bases


def _balance(factors: list) -> list:
    """Equal column norms across factors, components by decreasing weight, signs."""
    norms = [np.linalg.norm(factor, axis=0) for factor in factors]
    weights = np.prod(norms, axis=0)
    order = np.argsort(-weights, kind="stable")
    share = weights[order] ** 0.25
    balanced = []
    for factor, norm in zip(factors, norms, strict=True):
        unit = factor[:, order] / np.where(norm[order] > 0, norm[order], 1.0)
        balanced.append(unit * share)
    signs = np.ones(weights.size)
    for index in range(3):
        factor = balanced[index]
        peaks = factor[np.argmax(np.abs(factor), axis=0), np.arange(factor.shape[1])]
        flip = np.where(peaks < 0, -1.0, 1.0)
        balanced[index] = factor * flip
        signs *= flip
    balanced[3] = balanced[3] * signs
    return balanced


@single_threaded
@unit_scaled("pointwise_in", "vertical", "horizontal", "pointwise_out")
def cp_decompose(
    kernel,
    rank,
    *,
    init: str = "svd",
    n_iter_max: int = 100,
    tol: float = 1e-4,
    random_state=None,
) -> CPFactors:
    """CP decomposition of a kernel by accelerated alternating least squares.

    Args:
        kernel: ``(k_h, k_w, C_in, C_out)`` array.
        rank: the CP rank ``R`` in any form ``resolve_rank`` accepts (at most
            ``prod(shape) // max(shape)``).
        init: ``"svd"`` (leading singular vectors of each unfolding, random unit
            columns where ``R`` exceeds the mode size) or ``"random"``.
        n_iter_max: most ALS sweeps (at least 1) over the full kernel (the
            compressed core, when there is one, gets up to as many again).
        tol: stop when a sweep lowers the relative error by less than this
            fraction of it.
        random_state: None, an int or a Generator; with an int or a seeded
            Generator the result is reproducible.

    Returns:
        ``CPFactors`` with ``pointwise_in (C_in, R)``, ``vertical (k_h, R)``,
        ``horizontal (k_w, R)`` and ``pointwise_out (R, C_out)``; see its
        docstring for the scaling and sign conventions.

    Raises:
        ValueError: for a bad kernel, rank, ``init``, ``n_iter_max``, ``tol`` or
            ``random_state``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> parts = [rng.normal(size=(n, 4)) for n in (3, 3, 8, 16)]
        >>> kernel = np.einsum("hr,wr,cr,or->hwco", *parts)
        >>> result = cp_decompose(kernel, 4, random_state=0)
        >>> result.pointwise_in.shape, result.pointwise_out.shape
        ((8, 4), (4, 16))
        >>> result.relative_error < 1e-3
        True
    """
    kernel = check_kernel(kernel)
    rank = resolve_rank(rank, kernel, "cp")
    if not isinstance(init, str) or init not in _INITS:
        raise ValueError(
            f"init must be one of {', '.join(map(repr, _INITS))}, "
            f"received init={init!r}"
        )
    _check_iterations(n_iter_max, tol)
    if n_iter_max < 1:
        raise ValueError(
            "n_iter_max must be a positive int for CP (0 sweeps would return the "
            f"initialisation), received n_iter_max={n_iter_max!r}"
        )
    rng = check_random_state(random_state)
    initialise = _svd_init if init == "svd" else _random_init
    kh, kw, c_in, c_out = kernel.shape

    if not np.any(kernel):
        factors = _random_init(kernel, rank, rng)
        factors[3] = np.zeros_like(factors[3])
        n_iter = 0
    elif rank < c_in or rank < c_out:
        core, bases = _compress(kernel, rank)
        factors, _, _ = _als(
            _Kernel(core), initialise(core, rank, rng), n_iter_max, tol
        )
        factors[2] = bases[0] @ factors[2]
        factors[3] = bases[1] @ factors[3]
        factors, n_iter, _ = _als(_Kernel(kernel), factors, n_iter_max, tol)
    else:
        factors, n_iter, _ = _als(
            _Kernel(kernel), initialise(kernel, rank, rng), n_iter_max, tol
        )

    vertical, horizontal, pointwise_in, pointwise_out = _balance(factors)
    approximation = cp_to_dense(vertical, horizontal, pointwise_in, pointwise_out)
    return CPFactors(
        pointwise_in=pointwise_in,
        vertical=vertical,
        horizontal=horizontal,
        pointwise_out=pointwise_out.T,
        relative_error=relative_error(kernel, approximation),
        n_iter=n_iter,
    )


#: The names of the per-axis factors of a kernel with 1 or 3 spatial axes, as
#: the 1-D and 3-D CP layers name their weights.
AXIS_FACTORS = {1: ("depthwise",), 3: ("depth", "vertical", "horizontal")}


@dataclasses.dataclass(frozen=True, eq=False)
class CPAxesFactors:
    """A CP decomposition of a kernel with 1 or 3 spatial axes:
    ``kernel[..., c, o] ~= sum_r pointwise_in[c, r] prod_i axes[i][k_i, r]
    pointwise_out[r, o]``.

    Attributes:
        pointwise_in: ``(C_in, R)``.
        axes: one ``(k_i, R)`` factor per spatial axis.
        pointwise_out: ``(R, C_out)``.
        relative_error: ``||K - K_hat||_F / ||K||_F`` for the input kernel.
    """

    pointwise_in: np.ndarray
    axes: tuple[np.ndarray, ...]
    pointwise_out: np.ndarray
    relative_error: float

    @property
    def rank(self) -> int:
        return int(self.pointwise_in.shape[1])

    @property
    def factors(self) -> dict[str, np.ndarray]:
        """The factors by the names of the CP layer of the kernel's rank."""
        names = AXIS_FACTORS[len(self.axes)]
        return {
            "pointwise_in": self.pointwise_in,
            **dict(zip(names, self.axes, strict=True)),
            "pointwise_out": self.pointwise_out,
        }

    def to_dense(self) -> np.ndarray:
        return _tensorly.cp_to_tensor(
            [*self.axes, self.pointwise_in, self.pointwise_out.T]
        )


def cp_axes_decompose(
    kernel, rank: int, *, n_iter_max: int = 200, tol: float = 1e-8
) -> CPAxesFactors:
    """CP of a ``(*k, C_in, C_out)`` kernel with 1 or 3 spatial axes, by
    TensorLy's ALS from an SVD initialisation (deterministic).

    Args:
        kernel: ``(k, C_in, C_out)`` or ``(k_d, k_h, k_w, C_in, C_out)``.
        rank: the CP rank, a positive int.
        n_iter_max: most ALS sweeps.
        tol: stop when a sweep changes the error by less than this.

    Returns:
        ``CPAxesFactors``; the scale of each component is in ``pointwise_out``.

    Raises:
        ValueError: for a kernel that is not 3-D or 5-D or not finite, or a
            rank that is not a positive int.
    """
    array = np.asarray(kernel, dtype=np.float64)
    if array.ndim not in (3, 5) or not np.all(np.isfinite(array)):
        raise ValueError(
            "kernel must be a finite 3-D (k, C_in, C_out) or 5-D (k_d, k_h, k_w, "
            f"C_in, C_out) array, received kernel of shape {np.shape(kernel)}"
        )
    if isinstance(rank, bool) or not isinstance(rank, int | np.integer) or rank < 1:
        raise ValueError(f"rank must be a positive int, received rank={rank!r}")
    _check_iterations(n_iter_max, tol)
    if not np.any(array):
        # ALS divides by the factors' Gram matrices, singular for a zero
        # kernel; zero output factors reproduce it exactly.
        return CPAxesFactors(
            pointwise_in=np.ones((array.shape[-2], int(rank))),
            axes=tuple(np.ones((size, int(rank))) for size in array.shape[:-2]),
            pointwise_out=np.zeros((int(rank), array.shape[-1])),
            relative_error=0.0,
        )
    # ALS sees the kernel at unit scale (a kernel of 3e38 made its Gram
    # matrices singular); the power of two goes back into pointwise_out.
    scaled, exponent = to_unit_scale(array)
    try:
        weights, factors = _tensorly.parafac(
            scaled, int(rank), n_iter_max=n_iter_max, tol=tol, init="svd"
        )
    except np.linalg.LinAlgError:
        # A kernel of lower CP rank than asked (a constant kernel is rank 1)
        # makes the ALS systems singular; a ridge far below the kernel's unit
        # scale keeps them solvable without changing the fit.
        weights, factors = _tensorly.parafac(
            scaled,
            int(rank),
            n_iter_max=n_iter_max,
            tol=tol,
            init="svd",
            l2_reg=1e-12,
        )
    *axes, pointwise_in, pointwise_out = factors
    pointwise_out = np.ldexp((pointwise_out * weights).T, exponent)
    if not all(np.all(np.isfinite(f)) for f in (*axes, pointwise_in, pointwise_out)):
        raise ValueError(
            "cp_axes_decompose: the factors of kernel are not finite (largest "
            f"kernel magnitude {float(np.max(np.abs(array))):.3g})"
        )
    result = CPAxesFactors(
        pointwise_in=pointwise_in,
        axes=tuple(axes),
        pointwise_out=pointwise_out,
        relative_error=0.0,
    )
    error = relative_error(array, result.to_dense())
    return dataclasses.replace(result, relative_error=error)
