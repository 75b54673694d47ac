"""Tucker-2 decomposition of a kernel over its channel modes (Kim et al. 2016).

``kernel[h, w, c, o] ~= sum_{a, b} core[h, w, a, b] pointwise_in[c, a]
pointwise_out[b, o]``: a ``1x1`` convolution down to ``R_in`` channels, a full
``k_h x k_w`` convolution ``R_in -> R_out`` and a ``1x1`` convolution up to
``C_out``. The spatial modes are left alone.

Initialised with the truncated HOSVD (leading eigenvectors of each channel
mode's ``C x C`` Gram matrix, not an SVD of the wide unfolding) and refined by
higher-order orthogonal iteration (HOOI), alternating the two channel modes.
Each HOOI half-step is two steps of subspace iteration and a QR rather than an
eigendecomposition, with the large products in float32 (float64 once the error
is below 0.1); it stops when an iteration lowers the error by less than ``tol``
of it. The final bases are rotated to the core's own HOSVD, so components come
by decreasing energy, and the core is computed from the float64 kernel.
"""

from __future__ import annotations

import numpy as np

from fastconv.decomposition import _tensorly
from fastconv.decomposition._utils import (
    check_kernel,
    check_random_state,
    leading_subspace,
    orthonormal_basis,
    relative_error,
    single_threaded,
    unit_scaled,
)
from fastconv.decomposition.ranks import resolve_rank
from fastconv.decomposition.results import Tucker2Factors

__all__ = ["tucker2_decompose"]


# Below this relative error, float32 rounding (about 1e-7 of the kernel's
# squared norm) starts to blur a relative decrease of 1e-4 per sweep: the
# float32 iterations hand over to float64 ones there.
_FLOAT32_ABOVE = 0.1


def _converged(previous: float, error: float, tol: float) -> bool:
    """Whether a sweep from ``previous`` to ``error`` lowered the error by less
    than ``tol`` of it (an increase counts as converged)."""
    return bool(np.isfinite(previous)) and previous - error <= tol * previous


def _check_iterations(n_iter_max, tol) -> None:
    if not (isinstance(n_iter_max, int) and not isinstance(n_iter_max, bool)) or (
        n_iter_max < 0
    ):
        raise ValueError(
            f"n_iter_max must be a non-negative int, received n_iter_max={n_iter_max!r}"
        )
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise ValueError(f"tol must be a non-negative float, received tol={tol!r}")


@single_threaded
@unit_scaled("core")
def tucker2_decompose(
    kernel, rank, *, n_iter_max: int = 50, tol: float = 1e-4, random_state=None
) -> Tucker2Factors:
    """Tucker-2 (channel-mode) decomposition by HOSVD initialisation and HOOI.

    Args:
        kernel: ``(k_h, k_w, C_in, C_out)`` array.
        rank: ``(R_in, R_out)``, one int for both, or any other form
            ``resolve_rank`` accepts (a float keeps ``R_in / R_out`` proportional to
            ``C_in / C_out``; ``"vbmf"`` is Kim et al.'s choice).
        n_iter_max: most HOOI iterations after the HOSVD (0 returns the HOSVD).
        tol: stop when an iteration lowers the relative error by less than this
            fraction of it (TensorLy's ``partial_tucker`` stops at an absolute
            ``1e-4``).
        random_state: None, an int or a Generator. The algorithm is deterministic;
            the argument is validated and accepted for symmetry with
            ``cp_decompose``.

    Returns:
        ``Tucker2Factors`` with ``pointwise_in (C_in, R_in)`` (orthonormal
        columns), ``core (k_h, k_w, R_in, R_out)`` and ``pointwise_out
        (R_out, C_out)`` (orthonormal rows). At full rank the result is exact.

    Raises:
        ValueError: for a bad kernel, rank, ``n_iter_max``, ``tol`` or
            ``random_state``.

    Example:
        >>> kernel = np.random.default_rng(0).normal(size=(3, 3, 16, 32))
        >>> result = tucker2_decompose(kernel, (8, 16))
        >>> result.core.shape
        (3, 3, 8, 16)
        >>> tucker2_decompose(kernel, (16, 32)).relative_error < 1e-10
        True
    """
    kernel = check_kernel(kernel)
    r_in, r_out = resolve_rank(rank, kernel, "tucker")
    _check_iterations(n_iter_max, tol)
    check_random_state(random_state)
    kh, kw, c_in, c_out = kernel.shape

    basis_in = leading_subspace(_tensorly.unfold(kernel, 2), r_in)
    basis_out = leading_subspace(_tensorly.unfold(kernel, 3), r_out)
    n_iter = 0
    # With one mode kept whole the HOSVD is already the optimum.
    if r_in < c_in and r_out < c_out and n_iter_max > 0:
        basis_in, basis_out, n_iter = _hooi(
            kernel, basis_in, basis_out, n_iter_max, tol
        )
    core = _project(kernel, basis_in, basis_out)
    if n_iter:
        # Rotate the bases to the core's own HOSVD: components by decreasing
        # energy, signs fixed, as the HOSVD alone gives them.
        rotation_in = leading_subspace(_tensorly.unfold(core, 2), r_in)
        rotation_out = leading_subspace(_tensorly.unfold(core, 3), r_out)
        core = _project(core, rotation_in, rotation_out)
        basis_in, basis_out = basis_in @ rotation_in, basis_out @ rotation_out

    # With orthonormal bases ||K - K_hat||^2 = ||K||^2 - ||core||^2; below 1e-3
    # the difference loses digits, and the error is measured on K_hat instead.
    norm2 = float(np.vdot(kernel, kernel))
    squared = (norm2 - float(np.vdot(core, core))) / norm2 if norm2 else 0.0
    if squared < 1e-6:
        approximation = _tensorly.multi_mode_dot(
            core, [basis_in, basis_out], modes=[2, 3]
        )
        result_error = relative_error(kernel, approximation)
    else:
        result_error = float(np.sqrt(squared))
    return Tucker2Factors(
        pointwise_in=basis_in,
        core=core,
        pointwise_out=basis_out.T,
        relative_error=result_error,
        n_iter=n_iter,
    )


def _project(tensor: np.ndarray, basis_in: np.ndarray, basis_out: np.ndarray):
    """``tensor x_2 basis_in.T x_3 basis_out.T``: ``(k_h, k_w, R_in, R_out)``."""
    kh, kw, c_in, c_out = tensor.shape
    partial = tensor.reshape(-1, c_out) @ basis_out  # (k_h k_w C_in, R_out)
    partial = partial.reshape(kh, kw, c_in, -1)
    return np.einsum("hwcb,ca->hwab", partial, basis_in, optimize=True)


def _hooi(kernel, basis_in, basis_out, n_iter_max: int, tol: float):
    """Higher-order orthogonal iteration on the two channel modes.

    Each half-step replaces one basis by subspace iteration on the Gram matrix
    whose leading eigenvectors HOOI takes (`_subspace_step`): the same fixed
    points, at the cost of a QR of a ``C x R`` matrix instead of an
    eigendecomposition of a ``C x C`` one. The large products run in float32:
    they only steer the subspaces, and the core and the error are computed from
    the float64 kernel afterwards; below an error of ``_FLOAT32_ABOVE`` the last
    iterations run in float64, so that a near-exact fit is not limited by
    float32's rounding.

    Returns:
        ``(basis_in, basis_out, iterations)``.
    """
    kh, kw, c_in, c_out = kernel.shape
    r_in, r_out = basis_in.shape[1], basis_out.shape[1]
    norm2 = float(np.vdot(kernel, kernel))
    dtype = np.float32
    by_out = by_in = None
    previous = np.inf
    sweeps = 0
    while sweeps < n_iter_max:
        sweeps += 1
        if by_out is None:
            cast = kernel.astype(dtype)
            by_out = cast.reshape(-1, c_out)
            by_in = np.ascontiguousarray(cast.transpose(0, 1, 3, 2)).reshape(-1, c_in)
        partial = (by_out @ basis_out.astype(dtype)).reshape(kh, kw, c_in, r_out)
        basis_in, _ = _subspace_step(partial, basis_in)
        partial = (by_in @ basis_in.astype(dtype)).reshape(kh, kw, c_out, r_in)
        basis_out, core_norm2 = _subspace_step(partial, basis_out)
        # core_norm2 is that of (new basis_in, old basis_out).
        error = np.sqrt(max(norm2 - core_norm2, 0.0) / norm2) if norm2 else 0.0
        if _converged(previous, error, tol):
            if dtype == np.float64 or error >= _FLOAT32_ABOVE:
                break
            # The float32 estimates carry their rounding: float64 judges itself.
            dtype, by_out, error = np.float64, None, np.inf
        previous = error
    return basis_in, basis_out, sweeps


def _subspace_step(partial: np.ndarray, basis: np.ndarray):
    """Two steps of subspace iteration from ``basis`` on the Gram matrix of
    ``partial``'s mode-2 unfolding, then one QR.

    One step is enough for HOOI to converge, but slowly when the spectrum is
    flat (as for a random kernel); two reach a given error in fewer sweeps, for
    a fraction of the cost of the products that form ``partial``.

    Returns:
        ``(new_basis, ||basis.T @ unfolding||^2)``: the second value is the
        squared norm of the core for the old basis.
    """
    unfolded = partial.transpose(2, 0, 1, 3).reshape(partial.shape[2], -1)
    gram = (unfolded @ unfolded.T).astype(np.float64)
    power = gram @ basis
    return orthonormal_basis(gram @ power), float(np.vdot(power, basis))
