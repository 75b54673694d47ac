"""resolve_rank, max_rank, params_for_rank and evbmf."""

import warnings

import numpy as np
import pytest

from fastconv.decomposition import (
    RankClampedWarning,
    evbmf,
    max_rank,
    params_for_rank,
    resolve_rank,
)

SHAPE = (3, 3, 16, 32)


@pytest.mark.parametrize(
    "method, expected",
    [
        ("cp", 3 * 3 * 16 * 32 // 32),
        ("tucker", (16, 32)),
        ("factorized", 48),
        ("separable", 9),
    ],
)
def test_max_rank(method, expected):
    assert max_rank(SHAPE, method) == expected


@pytest.mark.parametrize("method", ["cp", "tucker", "factorized", "separable"])
@pytest.mark.parametrize("fraction", [0.05, 0.25, 0.5])
def test_a_fraction_keeps_the_parameters_within_the_budget(method, fraction):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankClampedWarning)
        rank = resolve_rank(fraction, SHAPE, method)
    budget = fraction * np.prod(SHAPE)
    params = params_for_rank(SHAPE, method, rank)
    assert params <= budget or rank in (1, (1, 1))
    bigger = tuple(r + 1 for r in rank) if method == "tucker" else rank + 1
    assert params_for_rank(SHAPE, method, bigger) > budget


def test_a_quarter_of_a_vgg_kernel():
    assert resolve_rank(0.25, (3, 3, 512, 512), "cp") == 572
    assert resolve_rank(0.25, (3, 3, 512, 512), "tucker") == (205, 205)


def test_energy_rule():
    rng = np.random.default_rng(0)
    low = rng.normal(size=(3, 3, 16, 2)) @ rng.normal(size=(2, 32))
    kernel = low + 1e-6 * rng.normal(size=(3, 3, 16, 32))
    assert resolve_rank("energy:0.999", kernel, "tucker")[1] == 2
    assert resolve_rank("energy:1.0", rng.normal(size=SHAPE), "tucker") == (16, 32)
    assert resolve_rank("energy:0.5", kernel, "factorized") >= 1


def test_vbmf_rule_recovers_planted_ranks():
    rng = np.random.default_rng(1)
    kernel = np.einsum(
        "hwab,ca,ob->hwco",
        rng.normal(size=(3, 3, 4, 6)),
        np.linalg.qr(rng.normal(size=(32, 4)))[0],
        np.linalg.qr(rng.normal(size=(48, 6)))[0],
    )
    kernel = 10 * kernel / np.linalg.norm(kernel) + 0.01 * rng.normal(size=kernel.shape)
    assert resolve_rank("vbmf", kernel, "tucker") == (4, 6)
    assert resolve_rank("vbmf", kernel, "cp") == 6


def test_vbmf_never_gives_zero():
    noise = np.random.default_rng(2).normal(size=(3, 3, 8, 8))
    with pytest.warns(RankClampedWarning, match="using the minimum 1"):
        assert resolve_rank("vbmf", noise, "tucker") == (1, 1)


def test_clamping_warns_and_names_the_bound():
    with pytest.warns(RankClampedWarning, match="above the maximum 9"):
        assert resolve_rank(50, SHAPE, "separable") == 9
    with pytest.warns(RankClampedWarning, match="R_out of 40, above the maximum 32"):
        assert resolve_rank((4, 40), SHAPE, "tucker") == (4, 32)
    with pytest.warns(RankClampedWarning, match="using the minimum 1"):
        assert resolve_rank(0.001, SHAPE, "factorized") == 1


@pytest.mark.parametrize(
    "rank",
    [0, -1, 1.5, 0.0, "energy:", "energy:0", "energy:1.5", "vbm", "8", True, None],
)
def test_bad_ranks(rank):
    with pytest.raises(ValueError, match="rank must be"):
        resolve_rank(rank, SHAPE, "cp")


def test_bad_method_and_shape():
    with pytest.raises(ValueError, match="method must be one of"):
        resolve_rank(2, SHAPE, "svd")
    with pytest.raises(ValueError, match="kernel_shape must be 4 positive ints"):
        resolve_rank(2, (3, 3, 0, 2), "cp")
    with pytest.raises(ValueError, match="depends on the kernel's values"):
        resolve_rank("vbmf", SHAPE, "cp")


def test_evbmf_on_a_noisy_low_rank_matrix():
    rng = np.random.default_rng(3)
    low = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 100))
    result = evbmf(3 * low + rng.normal(size=(40, 100)))
    assert result.rank == 3
    assert result.noise_variance == pytest.approx(1.0, rel=0.2)
    assert np.all(result.singular_values[:3] > result.threshold)
    assert evbmf(np.zeros((4, 5))).rank == 0
    with pytest.raises(ValueError, match="non-empty 2-D"):
        evbmf(np.ones(3))
    with pytest.raises(ValueError, match="finite"):
        evbmf(np.full((2, 2), np.nan))
