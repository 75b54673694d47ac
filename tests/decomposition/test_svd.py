"""spatial_svd_decompose and separable_decompose: optimality and exactness."""

import numpy as np
import pytest

from fastconv.decomposition import (
    SeparableFactors,
    SpatialSVDFactors,
    separable_decompose,
    spatial_svd_decompose,
)
from fastconv.decomposition._utils import relative_error


@pytest.mark.parametrize("shape", [(3, 3, 4, 6), (5, 3, 7, 2), (3, 1, 4, 4)])
def test_spatial_svd_is_the_best_rank_m_approximation(shape):
    kh, kw, c_in, c_out = shape
    kernel = np.random.default_rng(0).normal(size=shape)
    matrix = kernel.transpose(0, 2, 1, 3).reshape(kh * c_in, kw * c_out)
    singular = np.linalg.svd(matrix, compute_uv=False)
    for rank in range(1, len(singular) + 1):
        result = spatial_svd_decompose(kernel, rank)
        assert isinstance(result, SpatialSVDFactors)
        assert result.vertical.shape == (kh, 1, c_in, rank)
        assert result.horizontal.shape == (1, kw, rank, c_out)
        tail = np.sqrt(np.sum(singular[rank:] ** 2) / np.sum(singular**2))
        assert result.relative_error == pytest.approx(tail, abs=1e-7)
        assert relative_error(kernel, result.to_dense()) == pytest.approx(
            result.relative_error, abs=1e-7
        )
    assert result.relative_error < 1e-10


def test_spatial_svd_splits_each_singular_value_evenly():
    result = spatial_svd_decompose(
        np.random.default_rng(1).normal(size=(3, 3, 4, 4)), 5
    )
    left = np.linalg.norm(result.vertical.reshape(-1, 5), axis=0)
    right = np.linalg.norm(
        result.horizontal[0].transpose(1, 0, 2).reshape(5, -1), axis=1
    )
    np.testing.assert_allclose(left, right, rtol=1e-10)


@pytest.mark.parametrize("shape", [(3, 3, 4, 16), (3, 3, 5, 4), (1, 3, 2, 8)])
def test_separable_is_exact_at_full_depth_and_monotone(shape):
    kh, kw, c_in, c_out = shape
    kernel = np.random.default_rng(2).normal(size=shape)
    full = min(kh * kw, c_out)
    errors = []
    for depth in range(1, full + 1):
        result = separable_decompose(kernel, depth)
        assert isinstance(result, SeparableFactors) and result.rank == depth
        assert result.depthwise.shape == (kh, kw, c_in, depth)
        assert result.pointwise.shape == (c_in * depth, c_out)
        errors.append(result.relative_error)
    assert errors[-1] < 1e-10
    assert all(b <= a + 1e-12 for a, b in zip(errors, errors[1:], strict=False))
    np.testing.assert_allclose(result.to_dense(), kernel, atol=1e-10)


def test_separable_uses_keras_channel_order():
    """Row ``c * D + j`` of pointwise belongs to depthwise output j of channel c."""
    result = separable_decompose(np.random.default_rng(3).normal(size=(3, 3, 3, 5)), 2)
    expected = np.einsum(
        "hwcj,cjo->hwco",
        result.depthwise,
        result.pointwise.reshape(3, 2, 5),
    )
    np.testing.assert_allclose(result.to_dense(), expected, atol=1e-12)


@pytest.mark.parametrize("function", [spatial_svd_decompose, separable_decompose])
def test_bad_input(function):
    with pytest.raises(ValueError, match="must be 4-D"):
        function(np.ones((3, 3)), 1)
    with pytest.raises(ValueError, match="rank must be"):
        function(np.ones((3, 3, 2, 2)), 0)
