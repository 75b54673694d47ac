"""Matrix (SVD) factorisations of a kernel: spatial and per-input-channel.

``spatial_svd_decompose`` is Jaderberg et al.'s scheme 2: the kernel reshaped to a
``(k_h C_in, k_w C_out)`` matrix is truncated to rank ``M``, giving a ``k_h x 1``
convolution into ``M`` channels and a ``1 x k_w`` convolution out of them.

``separable_decompose`` truncates, for each input channel ``c``, the
``(k_h k_w, C_out)`` matrix ``kernel[:, :, c, :]`` to rank ``D``: a depthwise
convolution with depth multiplier ``D`` followed by a pointwise one. It is exact
once ``D >= min(k_h k_w, C_out)``.

``low_rank_decompose`` truncates a plain ``(features, units)`` matrix, a Dense
kernel, to rank ``R``: it is the spatial SVD of the matrix seen as a ``1 x 1``
kernel, so it shares that code and the ``"factorized"`` rank rules.
"""

from __future__ import annotations

import numpy as np

from fastconv.decomposition._utils import (
    check_kernel,
    leading_subspace,
    relative_error,
    single_threaded,
    svd,
    unit_scaled,
)
from fastconv.decomposition.ranks import resolve_rank
from fastconv.decomposition.results import (
    LowRankFactors,
    SeparableFactors,
    SpatialSVDFactors,
)

__all__ = ["low_rank_decompose", "separable_decompose", "spatial_svd_decompose"]


def _balanced(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rescales ``left[..., k]`` and ``right[..., k, :]`` to equal norms.

    ``left`` has orthonormal columns along its second-to-last axis and ``right``
    carries the singular values; afterwards each side holds ``sqrt(s_k)``.
    """
    norms = np.linalg.norm(right, axis=-1)
    root = np.sqrt(norms)
    safe = np.where(root > 0, root, 1.0)
    return left * root[..., None, :], right / safe[..., :, None]


@single_threaded
@unit_scaled("vertical", "horizontal")
def spatial_svd_decompose(kernel, rank) -> SpatialSVDFactors:
    """Factorises a kernel into a vertical and a horizontal convolution.

    Args:
        kernel: ``(k_h, k_w, C_in, C_out)`` array.
        rank: the number ``M`` of intermediate channels, in any form
            ``resolve_rank`` accepts (at most ``min(k_h C_in, k_w C_out)``).

    Returns:
        ``SpatialSVDFactors`` with ``vertical (k_h, 1, C_in, M)`` and
        ``horizontal (1, k_w, M, C_out)``; the best rank-``M`` approximation of the
        reshaped kernel (Eckart-Young).

    Raises:
        ValueError: for a bad kernel or rank.

    Example:
        >>> kernel = np.random.default_rng(0).normal(size=(3, 3, 8, 16))
        >>> result = spatial_svd_decompose(kernel, 24)
        >>> result.vertical.shape, result.horizontal.shape
        ((3, 1, 8, 24), (1, 3, 24, 16))
        >>> result.relative_error < 1e-10
        True
    """
    kernel = check_kernel(kernel)
    kh, kw, c_in, c_out = kernel.shape
    rank = resolve_rank(rank, kernel, "factorized")
    matrix = kernel.transpose(0, 2, 1, 3).reshape(kh * c_in, kw * c_out)
    if matrix.shape[0] <= matrix.shape[1]:
        basis = leading_subspace(matrix, rank)
        left, right = _balanced(basis, basis.T @ matrix)
    else:
        basis = leading_subspace(matrix.T, rank)
        right_t, left_t = _balanced(basis, basis.T @ matrix.T)
        left, right = left_t.T, right_t.T
    vertical = left.reshape(kh, c_in, rank)[:, None]
    horizontal = right.reshape(rank, kw, c_out).transpose(1, 0, 2)[None]
    approximation = (left @ right).reshape(kh, c_in, kw, c_out).transpose(0, 2, 1, 3)
    return SpatialSVDFactors(
        vertical=vertical,
        horizontal=horizontal,
        relative_error=relative_error(kernel, approximation),
    )


@single_threaded
@unit_scaled("depthwise", "pointwise")
def separable_decompose(kernel, depth_multiplier) -> SeparableFactors:
    """Factorises a kernel into a depthwise and a pointwise convolution.

    Args:
        kernel: ``(k_h, k_w, C_in, C_out)`` array.
        depth_multiplier: ``D``, in any form ``resolve_rank`` accepts (at most
            ``min(k_h k_w, C_out)``, where the factorisation is exact).

    Returns:
        ``SeparableFactors`` with ``depthwise (k_h, k_w, C_in, D)`` and
        ``pointwise (C_in D, C_out)``, row ``c D + j`` of ``pointwise`` belonging
        to depthwise output ``j`` of input channel ``c`` (Keras's order); each
        channel's part is its best rank-``D`` approximation.

    Raises:
        ValueError: for a bad kernel or depth multiplier.

    Example:
        >>> kernel = np.random.default_rng(0).normal(size=(3, 3, 4, 16))
        >>> result = separable_decompose(kernel, 9)
        >>> result.depthwise.shape, result.pointwise.shape
        ((3, 3, 4, 9), (36, 16))
        >>> result.relative_error < 1e-10
        True
    """
    kernel = check_kernel(kernel)
    kh, kw, c_in, c_out = kernel.shape
    depth = resolve_rank(depth_multiplier, kernel, "separable")
    per_channel = kernel.transpose(2, 0, 1, 3).reshape(c_in, kh * kw, c_out)
    u, s, vt = svd(per_channel)
    u, s, vt = u[:, :, :depth], s[:, :depth], vt[:, :depth, :]
    # Each depthwise filter's largest-magnitude tap is made positive.
    peaks = np.take_along_axis(u, np.argmax(np.abs(u), axis=1)[:, None, :], axis=1)
    signs = np.where(peaks[:, 0, :] < 0, -1.0, 1.0)
    root = np.sqrt(s)
    left = u * (signs * root)[:, None, :]
    right = vt * (signs * root)[:, :, None]
    approximation = (left @ right).reshape(c_in, kh, kw, c_out).transpose(1, 2, 0, 3)
    return SeparableFactors(
        depthwise=left.reshape(c_in, kh, kw, depth).transpose(1, 2, 0, 3),
        pointwise=right.reshape(c_in * depth, c_out),
        relative_error=relative_error(kernel, approximation),
    )


def low_rank_decompose(matrix, rank) -> LowRankFactors:
    """Truncates a matrix (a Dense kernel) to rank ``R`` by SVD.

    Args:
        matrix: ``(features, units)`` array of finite real numbers.
        rank: ``R``, in any form ``resolve_rank`` accepts: an int, a float in
            ``(0, 1]`` (fraction of the ``features units`` parameters: ``R
            (features + units)`` are kept), ``"energy:<fraction>"`` or
            ``"vbmf"`` (on the matrix itself); clamped to
            ``[1, min(features, units)]``, where the factorisation is exact.

    Returns:
        ``LowRankFactors`` with ``kernel_in (features, R)`` and ``kernel_out
        (R, units)``, the best rank-``R`` approximation (Eckart-Young), scaled
        like the matrix whatever its magnitude.

    Raises:
        ValueError: for a matrix that is not 2-D, empty or not finite, a bad
            rank, or factors that overflow float64.

    Example:
        >>> matrix = np.random.default_rng(0).normal(size=(16, 12))
        >>> result = low_rank_decompose(matrix, 12)
        >>> result.kernel_in.shape, result.kernel_out.shape
        ((16, 12), (12, 12))
        >>> result.relative_error < 1e-10
        True
    """
    try:
        array = np.asarray(matrix)
    except (TypeError, ValueError) as error:
        raise ValueError(
            "matrix must be a 2-D numeric array, received matrix of type "
            f"{type(matrix).__name__}"
        ) from error
    if array.ndim != 2:
        raise ValueError(
            "matrix must be 2-D (features, units), received matrix with shape "
            f"{array.shape}"
        )
    result = spatial_svd_decompose(check_kernel(array[None, None], "matrix"), rank)
    return LowRankFactors(
        kernel_in=result.vertical[0, 0],
        kernel_out=result.horizontal[0, 0],
        relative_error=result.relative_error,
    )
