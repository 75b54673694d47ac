"""The one place where fastconv calls TensorLy.

Every TensorLy function the decomposition package uses is wrapped here, so an API
change in TensorLy breaks one file, not five. Each wrapper runs under TensorLy's
NumPy backend whatever backend the caller has selected, and takes and returns
NumPy arrays.

Tested with TensorLy 0.10.0 (the version installed in the development
environment); the code uses only functions that exist unchanged since 0.9.0:
``tensorly.base.unfold``, ``tensorly.tenalg.multi_mode_dot``,
``tensorly.cp_to_tensor``, ``tensorly.decomposition.parafac`` and
``tensorly.decomposition.partial_tucker``.

The inner loops of CP-ALS and HOOI do not go through TensorLy: its ``parafac``
forms the full Khatri-Rao product for every mode (about 3.6 GB for one
``3x3x512x512`` kernel at rank 572) and its SVD helpers compute both singular
bases of very wide unfoldings. ``cp.py`` and ``tucker.py`` contract mode by mode
in NumPy instead; TensorLy's own decompositions stay available here as the
reference they are compared against.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import tensorly
import tensorly.backend
import tensorly.base
import tensorly.decomposition
import tensorly.tenalg

__all__ = [
    "TENSORLY_VERSION",
    "cp_to_tensor",
    "multi_mode_dot",
    "parafac",
    "partial_tucker",
    "unfold",
]

TENSORLY_VERSION: str = tensorly.__version__


@contextlib.contextmanager
def _numpy_backend() -> Iterator[None]:
    """Runs the body under TensorLy's NumPy backend, for this thread only."""
    if tensorly.get_backend() == "numpy":
        yield
        return
    with tensorly.backend.backend_context("numpy", local_threadsafe=True):
        yield


def unfold(tensor: np.ndarray, mode: int) -> np.ndarray:
    """Mode-``mode`` unfolding: shape ``(tensor.shape[mode], -1)``.

    Args:
        tensor: an n-D array.
        mode: the axis that becomes the rows.

    Returns:
        The unfolding, in TensorLy's (row-major) column order.
    """
    with _numpy_backend():
        return np.asarray(tensorly.base.unfold(tensor, mode))


def multi_mode_dot(
    tensor: np.ndarray, matrices: Sequence[np.ndarray], modes: Sequence[int]
) -> np.ndarray:
    """Mode products ``tensor x_m matrices[i]`` for each ``m = modes[i]``.

    Args:
        tensor: an n-D array.
        matrices: matrices of shape ``(new_size, tensor.shape[m])``.
        modes: the axes they act on.

    Returns:
        The product, with ``shape[m]`` replaced by ``matrices[i].shape[0]``.
    """
    with _numpy_backend():
        return np.asarray(
            tensorly.tenalg.multi_mode_dot(tensor, list(matrices), modes=list(modes))
        )


def cp_to_tensor(factors: Sequence[np.ndarray]) -> np.ndarray:
    """Dense tensor of a CP model with unit weights.

    Args:
        factors: one ``(size_m, R)`` matrix per mode.

    Returns:
        ``sum_r factors[0][:, r] o factors[1][:, r] o ...``.
    """
    with _numpy_backend():
        return np.asarray(tensorly.cp_to_tensor((None, list(factors))))


def parafac(
    tensor: np.ndarray, rank: int, **kwargs
) -> tuple[np.ndarray, list[np.ndarray]]:
    """TensorLy's CP-ALS, as the reference to compare against.

    Args:
        tensor: the tensor to decompose.
        rank: the CP rank.
        **kwargs: passed to ``tensorly.decomposition.parafac`` (defaults are its
            own: SVD init, 100 iterations, ``tol=1e-8``).

    Returns:
        ``(weights, factors)``.
    """
    with _numpy_backend(), warnings.catch_warnings():
        # It warns when the rank exceeds a mode size and pads that factor.
        warnings.simplefilter("ignore", UserWarning)
        weights, factors = tensorly.decomposition.parafac(tensor, rank, **kwargs)
    return np.asarray(weights), [np.asarray(f) for f in factors]


def partial_tucker(
    tensor: np.ndarray, rank: Sequence[int], modes: Sequence[int], **kwargs
) -> tuple[np.ndarray, list[np.ndarray]]:
    """TensorLy's HOOI on some modes, as the reference to compare against.

    Args:
        tensor: the tensor to decompose.
        rank: one rank per entry of ``modes``.
        modes: the modes to decompose.
        **kwargs: passed to ``tensorly.decomposition.partial_tucker``.

    Returns:
        ``(core, factors)`` with ``factors[i]`` of shape
        ``(tensor.shape[modes[i]], rank[i])``.
    """
    with _numpy_backend():
        (core, factors), _ = tensorly.decomposition.partial_tucker(
            tensor, list(rank), modes=list(modes), **kwargs
        )
    return np.asarray(core), [np.asarray(f) for f in factors]
