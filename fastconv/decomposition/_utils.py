"""Argument checks and small linear-algebra helpers shared by the decompositions.

The decompositions run NumPy's BLAS with one thread (``threadpoolctl``; without
it, as NumPy is configured). OpenBLAS splits LAPACK routines into many small
steps with a thread barrier after each, and when the machine has more runnable
threads than cores every barrier waits for a descheduled thread. One thread
is the safe choice on a machine shared with other work, not the fastest on a
quiet one: ``benchmarks/decomposition_speed.py --threads`` measured, at a load
average of 1.0 on two cores, a CP decomposition of a ``3x3x512x512`` kernel at
rank 572 in 5.6 s with one thread and 4.7 s with two (LAPACK calls on one), and
a ``512 x 512`` eigendecomposition in 33 ms and 32 ms
(``benchmarks/results/decomposition-threads.json``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import numbers
from collections.abc import Callable, Iterator

import numpy as np

__all__ = [
    "check_kernel",
    "check_random_state",
    "cp_to_dense",
    "eigh",
    "fix_signs",
    "leading_subspace",
    "one_blas_thread",
    "orthonormal_basis",
    "relative_error",
    "single_threaded",
    "solve",
    "squared_singular_values",
    "svd",
    "to_unit_scale",
    "unit_scaled",
]


@functools.cache
def _blas_controller():
    try:
        import threadpoolctl
    except ImportError:
        return None
    return threadpoolctl.ThreadpoolController().select(user_api="blas")


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Runs the body with the BLAS libraries limited to one thread."""
    controller = _blas_controller()
    if controller is None or not controller.lib_controllers:
        yield
        return
    with controller.limit(limits=1):
        yield


def single_threaded(function: Callable) -> Callable:
    """Decorator: ``function`` runs inside `one_blas_thread`."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with one_blas_thread():
            return function(*args, **kwargs)

    return wrapper


def eigh(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.linalg.eigh`` with one BLAS thread: ascending values, vectors."""
    with one_blas_thread():
        return np.linalg.eigh(matrix)


def svd(matrix: np.ndarray, **kwargs):
    """``np.linalg.svd(matrix, full_matrices=False, **kwargs)`` with one BLAS
    thread (stacks of matrices included)."""
    with one_blas_thread():
        return np.linalg.svd(matrix, full_matrices=False, **kwargs)


def orthonormal_basis(matrix: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the column space of a tall ``matrix`` (QR), float64."""
    with one_blas_thread():
        return np.linalg.qr(np.asarray(matrix, dtype=np.float64))[0]


def solve(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``np.linalg.solve`` with one BLAS thread, least squares if singular."""
    with one_blas_thread():
        try:
            return np.linalg.solve(matrix, rhs)
        except np.linalg.LinAlgError:
            return np.linalg.lstsq(matrix, rhs, rcond=None)[0]


def check_kernel(kernel, name: str = "kernel") -> np.ndarray:
    """Validates a convolution kernel and returns it as a float64 array.

    Args:
        kernel: array-like of shape ``(k_h, k_w, C_in, C_out)`` (Keras layout).
        name: the argument name used in error messages.

    Returns:
        A C-contiguous float64 copy-or-view of ``kernel``.

    Raises:
        ValueError: if ``kernel`` is not numeric, not 4-D, has a zero-sized axis
            or contains NaN or Inf.
    """
    try:
        array = np.asarray(kernel)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name} must be a 4-D numeric array, received {name} of type "
            f"{type(kernel).__name__}"
        ) from error
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
    ):
        raise ValueError(
            f"{name} must be a 4-D numeric array, received {name} with dtype "
            f"{array.dtype}"
        )
    if np.iscomplexobj(array):
        raise ValueError(
            f"{name} must be real, received {name} with dtype {array.dtype}"
        )
    if array.ndim != 4:
        raise ValueError(
            f"{name} must be 4-D (k_h, k_w, C_in, C_out), received {name} with "
            f"shape {array.shape}"
        )
    if 0 in array.shape:
        raise ValueError(
            f"{name} must have no empty axis, received {name} with shape {array.shape}"
        )
    array = np.ascontiguousarray(array, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"{name} must be finite, received {name} containing NaN or Inf"
        )
    return array


def to_unit_scale(kernel: np.ndarray, multiple: int = 1) -> tuple[np.ndarray, int]:
    """``kernel`` divided by ``2**exponent``, exactly, with its largest magnitude
    near 1, and ``exponent`` (a multiple of ``multiple``; 0 for a zero kernel).

    Args:
        kernel: a float64 array (``check_kernel``'s output).
        multiple: the exponent is rounded to a multiple of this.
    """
    peak = float(np.max(np.abs(kernel)))
    if not peak:
        return kernel, 0
    exponent = multiple * round(int(np.frexp(peak)[1]) / multiple)
    return np.ldexp(kernel, -exponent), exponent


def unit_scaled(*carriers: str) -> Callable:
    """Decorator: the decomposition sees its kernel scaled to unit size.

    The kernel (first argument) is multiplied by a power of two, exact in
    floating point, that brings its largest magnitude near 1, so that no
    tolerance, Gram matrix or eigensolver meets a kernel of 1e-30 or 1e300 (a
    ``3x3x8x16`` kernel of 1e-30 came back as zero factors, one of 1e30 failed
    in ``eigh``). The power is then put back, split evenly and exactly over the
    factors named in ``carriers``, which the decomposition's result must hold
    (``dataclasses.replace`` makes the new result; its ``relative_error`` does
    not depend on the scale). An all-zero kernel is decomposed as is.

    Raises:
        ValueError: as ``check_kernel``, or if a factor is not finite (a kernel
            whose factors overflow float64).
    """
    count = len(carriers)

    def decorator(decompose: Callable) -> Callable:
        @functools.wraps(decompose)
        def wrapper(kernel, *args, **kwargs):
            kernel = check_kernel(kernel)
            scaled, exponent = to_unit_scale(kernel, count)
            share = exponent // count
            result = decompose(scaled, *args, **kwargs)
            if share:
                result = dataclasses.replace(
                    result,
                    **{n: np.ldexp(getattr(result, n), share) for n in carriers},
                )
            for name, factor in result.factors.items():
                if not np.all(np.isfinite(factor)):
                    raise ValueError(
                        f"{decompose.__name__}: the factor {name!r} of kernel is not "
                        f"finite (largest kernel magnitude "
                        f"{float(np.max(np.abs(kernel))):.3g})"
                    )
            return result

        return wrapper

    return decorator


def check_random_state(random_state) -> np.random.Generator:
    """Turns ``random_state`` into a ``np.random.Generator``.

    Args:
        random_state: None (fresh entropy), an int seed or a Generator (used as
            is, so the caller's stream advances).

    Returns:
        A Generator.

    Raises:
        ValueError: for anything else, including bools and negative seeds.
    """
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if (
        isinstance(random_state, numbers.Integral)
        and not isinstance(random_state, (bool, np.bool_))
        and random_state >= 0
    ):
        return np.random.default_rng(int(random_state))
    raise ValueError(
        "random_state must be None, a non-negative int or a numpy.random.Generator, "
        f"received random_state={random_state!r}"
    )


def squared_singular_values(matrix: np.ndarray) -> np.ndarray:
    """Squared singular values of ``matrix``, in decreasing order.

    Computed as the eigenvalues of the Gram matrix of the shorter side, which is
    an order of magnitude faster than an SVD of a wide unfolding; the absolute
    error is about ``eps * s_max**2``, far below anything a rank rule looks at.

    Args:
        matrix: a 2-D array.

    Returns:
        ``min(matrix.shape)`` non-negative values.
    """
    gram = (
        matrix @ matrix.T if matrix.shape[0] <= matrix.shape[1] else matrix.T @ matrix
    )
    with one_blas_thread():
        values = np.linalg.eigvalsh(gram)[::-1]
    return np.clip(values, 0.0, None)


def leading_subspace(matrix: np.ndarray, k: int) -> np.ndarray:
    """Orthonormal basis of the leading ``k``-dimensional left singular subspace.

    Uses the eigenvectors of ``matrix @ matrix.T``; for a matrix with fewer
    columns than rows and ``k`` at most the column count, the economy SVD
    instead, whose cost grows with the short side (a 1x1 kernel with 2,048
    output channels and 512 inputs: no 2,048 x 2,048 eigenproblem). Callers
    project with the basis (``U @ (U.T @ matrix)``) rather than divide by
    singular values, so the reconstruction stays exact when ``k`` reaches the
    row count and is optimal up to ``eps * s_max**2`` otherwise.

    Args:
        matrix: a 2-D array of shape ``(m, n)``.
        k: the subspace dimension, ``1 <= k <= m``.

    Returns:
        An ``(m, k)`` array with orthonormal columns, ordered by decreasing
        singular value, each column's largest-magnitude entry positive.
    """
    rows, cols = matrix.shape
    if cols < rows and k <= cols:
        vectors = np.linalg.svd(matrix, full_matrices=False)[0]
        return fix_signs(vectors[:, :k].copy())
    _, vectors = eigh(matrix @ matrix.T)
    return fix_signs(vectors[:, ::-1][:, :k].copy())


def fix_signs(columns: np.ndarray) -> np.ndarray:
    """Flips columns so that each one's largest-magnitude entry is positive.

    Args:
        columns: a 2-D array.

    Returns:
        The flipped array (a new array).
    """
    rows = np.argmax(np.abs(columns), axis=0)
    signs = np.sign(columns[rows, np.arange(columns.shape[1])])
    signs[signs == 0] = 1.0
    return columns * signs


def relative_error(kernel: np.ndarray, approximation: np.ndarray) -> float:
    """``||kernel - approximation||_F / ||kernel||_F`` (0 for two zero kernels).

    Args:
        kernel: the original.
        approximation: same shape.

    Returns:
        The relative Frobenius error; ``inf`` if only ``kernel`` is zero.
    """
    difference = float(np.linalg.norm(kernel - approximation))
    norm = float(np.linalg.norm(kernel))
    if norm == 0.0:
        return 0.0 if difference == 0.0 else float("inf")
    return difference / norm


def cp_to_dense(
    vertical: np.ndarray,
    horizontal: np.ndarray,
    pointwise_in: np.ndarray,
    pointwise_out: np.ndarray,
) -> np.ndarray:
    """The kernel of a CP model: ``sum_r v[h, r] h[w, r] i[c, r] o[o, r]``.

    One matrix product, ``(k_h k_w C_in, R) @ (R, C_out)``; TensorLy's
    ``cp_to_tensor`` takes seconds for a ``3x3x512x512`` kernel at rank 572.

    Args:
        vertical: ``(k_h, R)``.
        horizontal: ``(k_w, R)``.
        pointwise_in: ``(C_in, R)``.
        pointwise_out: ``(C_out, R)``.

    Returns:
        The ``(k_h, k_w, C_in, C_out)`` kernel, float64.
    """
    kh, kw = vertical.shape[0], horizontal.shape[0]
    c_in, rank = pointwise_in.shape
    spatial = vertical[:, None, :] * horizontal[None, :, :]
    left = (spatial[:, :, None, :] * pointwise_in[None, None, :, :]).reshape(-1, rank)
    return (left @ pointwise_out.T).reshape(kh, kw, c_in, -1)
