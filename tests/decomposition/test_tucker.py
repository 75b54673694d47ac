"""tucker2_decompose: exactness, HOOI against HOSVD and TensorLy, bad input."""

import numpy as np
import pytest

from fastconv.decomposition import Tucker2Factors, _tensorly, tucker2_decompose
from fastconv.decomposition._utils import relative_error


def low_rank_kernel(shape, ranks, seed=0):
    kh, kw, c_in, c_out = shape
    rng = np.random.default_rng(seed)
    core = rng.standard_normal((kh, kw, *ranks))
    u = np.linalg.qr(rng.standard_normal((c_in, ranks[0])))[0]
    v = np.linalg.qr(rng.standard_normal((c_out, ranks[1])))[0]
    return _tensorly.multi_mode_dot(core, [u, v], modes=[2, 3])


@pytest.mark.parametrize("shape", [(3, 3, 8, 12), (1, 1, 5, 3), (5, 3, 16, 4)])
def test_full_rank_is_exact(shape):
    kernel = np.random.default_rng(0).normal(size=shape)
    result = tucker2_decompose(kernel, (shape[2], shape[3]))
    assert result.relative_error < 1e-12
    np.testing.assert_allclose(result.to_dense(), kernel, atol=1e-12)


def test_a_kernel_of_known_multilinear_rank_is_recovered():
    kernel = low_rank_kernel((3, 3, 16, 20), (4, 5))
    result = tucker2_decompose(kernel, (4, 5))
    assert result.relative_error < 1e-10
    noisy = kernel + 1e-3 * np.random.default_rng(1).normal(size=kernel.shape)
    assert tucker2_decompose(noisy, (4, 5)).relative_error < 0.01


def test_factors_are_orthonormal_and_the_core_is_ordered():
    kernel = np.random.default_rng(2).normal(size=(3, 3, 20, 24))
    result = tucker2_decompose(kernel, (6, 7))
    assert isinstance(result, Tucker2Factors) and result.rank == (6, 7)
    np.testing.assert_allclose(
        result.pointwise_in.T @ result.pointwise_in, np.eye(6), atol=1e-12
    )
    np.testing.assert_allclose(
        result.pointwise_out @ result.pointwise_out.T, np.eye(7), atol=1e-12
    )
    energy_in = np.sum(result.core**2, axis=(0, 1, 3))
    assert np.all(np.diff(energy_in) <= 1e-12)
    assert relative_error(kernel, result.to_dense()) == pytest.approx(
        result.relative_error, rel=1e-9
    )


def test_hooi_improves_on_the_hosvd_and_matches_tensorly():
    kernel = np.random.default_rng(3).normal(size=(3, 3, 24, 32))
    hosvd = tucker2_decompose(kernel, (8, 10), n_iter_max=0)
    assert hosvd.n_iter == 0
    hooi = tucker2_decompose(kernel, (8, 10))
    assert hooi.n_iter > 0
    assert hooi.relative_error < hosvd.relative_error
    core, factors = _tensorly.partial_tucker(kernel, [8, 10], modes=[2, 3])
    theirs = relative_error(
        kernel, _tensorly.multi_mode_dot(core, factors, modes=[2, 3])
    )
    assert hooi.relative_error <= theirs * 1.002


def test_one_full_mode_needs_no_iteration():
    kernel = np.random.default_rng(4).normal(size=(3, 3, 6, 20))
    result = tucker2_decompose(kernel, (6, 5))
    assert result.n_iter == 0


def test_tighter_tolerance_runs_longer_and_fits_better():
    kernel = np.random.default_rng(5).normal(size=(3, 3, 32, 32))
    loose = tucker2_decompose(kernel, 10, tol=1e-2)
    tight = tucker2_decompose(kernel, 10, tol=1e-7)
    assert loose.n_iter < tight.n_iter
    assert tight.relative_error <= loose.relative_error


@pytest.mark.parametrize(
    "rank, expected",
    [(4, (4, 4)), ((3, 5), (3, 5)), ([2, 6], (2, 6)), ("energy:1", (8, 12))],
)
def test_rank_forms(rank, expected):
    kernel = np.random.default_rng(6).normal(size=(3, 3, 8, 12))
    assert tucker2_decompose(kernel, rank).rank == expected


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_iter_max": -1}, "n_iter_max must be a non-negative int"),
        ({"tol": "small"}, "tol must be a non-negative float"),
        ({"random_state": 1.5}, "random_state must be None"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tucker2_decompose(np.ones((3, 3, 4, 4)), 2, **kwargs)


@pytest.mark.parametrize("rank", [(0, 2), (2, 2, 2), ("a", 2), (2.0, 2), "vbm"])
def test_bad_ranks(rank):
    with pytest.raises(ValueError, match="rank must be"):
        tucker2_decompose(np.ones((3, 3, 4, 4)), rank)
