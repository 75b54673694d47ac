"""cp_decompose: exactness, conventions, quality against TensorLy, bad input."""

import numpy as np
import pytest

from fastconv.decomposition import CPFactors, _tensorly, cp_decompose
from fastconv.decomposition._utils import cp_to_dense, relative_error


def cp_kernel(shape, rank, seed=0):
    rng = np.random.default_rng(seed)
    parts = [rng.standard_normal((size, rank)) for size in shape]
    return np.einsum("hr,wr,cr,or->hwco", *parts)


@pytest.mark.parametrize(
    "init, shape",
    [
        ("svd", (3, 3, 12, 16)),
        ("svd", (3, 1, 20, 6)),
        ("svd", (5, 3, 4, 4)),
        ("random", (3, 3, 12, 16)),
        # From random starts ALS can sit in a "swamp" for hundreds of sweeps
        # (seed 0 does on the (3, 1, 20, 6) kernel): the default is "svd".
        ("random", (5, 3, 4, 4)),
    ],
)
def test_recovers_a_kernel_of_known_cp_rank(init, shape):
    kernel = cp_kernel(shape, 4)
    result = cp_decompose(kernel, 4, init=init, random_state=0)
    assert result.relative_error < 1e-6
    assert relative_error(kernel, result.to_dense()) == pytest.approx(
        result.relative_error, rel=1e-3, abs=1e-12
    )


def test_factor_shapes_and_conventions():
    result = cp_decompose(np.random.default_rng(0).normal(size=(3, 5, 8, 6)), 7)
    assert isinstance(result, CPFactors) and result.rank == 7
    assert result.pointwise_in.shape == (8, 7)
    assert result.vertical.shape == (3, 7) and result.horizontal.shape == (5, 7)
    assert result.pointwise_out.shape == (7, 6)
    assert result.n_params == 7 * (8 + 3 + 5 + 6)
    norms = np.stack(
        [
            np.linalg.norm(result.pointwise_in, axis=0),
            np.linalg.norm(result.vertical, axis=0),
            np.linalg.norm(result.horizontal, axis=0),
            np.linalg.norm(result.pointwise_out, axis=1),
        ]
    )
    np.testing.assert_allclose(norms, norms[:1].repeat(4, axis=0), rtol=1e-10)
    assert np.all(np.diff(norms[0]) <= 1e-12)  # components by decreasing weight
    for factor in (result.pointwise_in, result.vertical, result.horizontal):
        peaks = factor[np.argmax(np.abs(factor), axis=0), np.arange(7)]
        assert np.all(peaks > 0)
    assert not result.pointwise_in.flags.writeable


def test_to_dense_matches_the_definition_and_tensorly():
    result = cp_decompose(np.random.default_rng(1).normal(size=(3, 3, 6, 5)), 4)
    expected = np.einsum(
        "hr,wr,cr,ro->hwco",
        result.vertical,
        result.horizontal,
        result.pointwise_in,
        result.pointwise_out,
    )
    np.testing.assert_allclose(result.to_dense(), expected, atol=1e-12)
    np.testing.assert_allclose(
        _tensorly.cp_to_tensor(
            [
                result.vertical,
                result.horizontal,
                result.pointwise_in,
                result.pointwise_out.T,
            ]
        ),
        expected,
        atol=1e-12,
    )


@pytest.mark.parametrize("shape, rank", [((3, 3, 16, 16), 10), ((3, 3, 24, 8), 6)])
def test_at_least_as_good_as_tensorly_default(shape, rank):
    """Same kernel, same rank: the error is within 1% of TensorLy's parafac with
    its defaults (SVD init, 100 iterations)."""
    kernel = np.random.default_rng(2).normal(size=shape)
    ours = cp_decompose(kernel, rank, random_state=0).relative_error
    weights, factors = _tensorly.parafac(kernel, rank)
    theirs = relative_error(
        kernel, cp_to_dense(factors[0] * weights, factors[1], factors[2], factors[3])
    )
    assert ours <= theirs * 1.01


def test_compressed_path_when_the_rank_is_below_the_channels():
    """R < C goes through HOSVD compression; the error still falls with R."""
    kernel = np.random.default_rng(3).normal(size=(3, 3, 32, 32))
    errors = [
        cp_decompose(kernel, rank, random_state=0).relative_error
        for rank in (2, 8, 24, 64)
    ]
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False))


def test_tolerance_and_iterations():
    kernel = np.random.default_rng(4).normal(size=(3, 3, 12, 12))
    one = cp_decompose(kernel, 20, n_iter_max=1, random_state=0)
    loose = cp_decompose(kernel, 20, tol=1e-2, random_state=0)
    tight = cp_decompose(kernel, 20, tol=1e-6, random_state=0)
    assert one.n_iter == 1
    assert loose.n_iter < tight.n_iter
    assert tight.relative_error < loose.relative_error < one.relative_error


def test_random_state_makes_it_reproducible():
    kernel = np.random.default_rng(5).normal(size=(3, 3, 8, 8))
    a = cp_decompose(kernel, 12, init="random", random_state=7)
    b = cp_decompose(kernel, 12, init="random", random_state=np.random.default_rng(7))
    for x, y in zip(a.factors.values(), b.factors.values(), strict=True):
        np.testing.assert_array_equal(x, y)


def test_zero_kernel():
    result = cp_decompose(np.zeros((3, 3, 4, 4)), 2, random_state=0)
    assert result.relative_error == 0.0
    assert not np.any(result.to_dense())


def test_float32_kernel_gives_float64_factors():
    kernel = cp_kernel((3, 3, 6, 6), 3).astype("float32")
    result = cp_decompose(kernel, 3, random_state=0)
    assert result.pointwise_in.dtype == np.float64
    assert result.relative_error < 1e-5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"init": "tucker"}, "init must be one of 'svd', 'random'"),
        ({"n_iter_max": -1}, "n_iter_max must be a non-negative int"),
        ({"n_iter_max": 2.5}, "n_iter_max must be a non-negative int"),
        ({"tol": -1.0}, "tol must be a non-negative float"),
        ({"random_state": "seed"}, "random_state must be None"),
        ({"random_state": -3}, "random_state must be None"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cp_decompose(np.ones((3, 3, 2, 2)), 2, **kwargs)


@pytest.mark.parametrize(
    "kernel, match",
    [
        (np.ones((3, 3, 2)), "must be 4-D"),
        (np.ones((3, 3, 0, 2)), "no empty axis"),
        (np.full((3, 3, 2, 2), np.nan), "must be finite"),
        (np.full((3, 3, 2, 2), np.inf), "must be finite"),
        (np.array([["a"]]), "numeric"),
        (np.ones((3, 3, 2, 2), complex), "must be real"),
    ],
)
def test_bad_kernels(kernel, match):
    with pytest.raises(ValueError, match=match):
        cp_decompose(kernel, 2)


@pytest.mark.parametrize("rank", [0, -2, 1.5, "eight", "energy:2", True, None])
def test_bad_ranks(rank):
    with pytest.raises(ValueError, match="rank must be"):
        cp_decompose(np.ones((3, 3, 4, 4)), rank)


@pytest.mark.parametrize("shape", [(3, 4, 6), (3, 3, 3, 4, 6)])
@pytest.mark.parametrize("fill", [0.0, 1.0, 3e38])
def test_cp_axes_gives_finite_factors_for_zero_constant_and_huge_kernels(shape, fill):
    # A constant kernel is of CP rank 1, below the rank asked for: the ALS
    # systems were singular ("Singular matrix"); 3e38 also tested the scale.
    from fastconv.decomposition.cp import cp_axes_decompose

    kernel = np.full(shape, fill)
    result = cp_axes_decompose(kernel, 2, n_iter_max=20)
    for factor in (*result.axes, result.pointwise_in, result.pointwise_out):
        assert np.all(np.isfinite(factor))
    assert result.relative_error < 1e-6
