"""The decompositions limit BLAS to one thread, and work without threadpoolctl."""

import sys

import numpy as np
import pytest

from fastconv.decomposition import _utils, cp_decompose, tucker2_decompose


def test_blas_runs_with_one_thread_inside_and_is_restored_after():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()]
    seen = []

    @_utils.single_threaded
    def probe():
        seen.extend(
            lib["num_threads"]
            for lib in threadpoolctl.threadpool_info()
            if lib["user_api"] == "blas"
        )

    probe()
    assert seen and set(seen) == {1}
    assert [lib["num_threads"] for lib in threadpoolctl.threadpool_info()] == before


def test_without_threadpoolctl_the_decompositions_still_run(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import fails
    _utils._blas_controller.cache_clear()
    try:
        kernel = np.random.default_rng(0).normal(size=(3, 3, 8, 8))
        assert tucker2_decompose(kernel, 4).relative_error < 1
        assert cp_decompose(kernel, 4, random_state=0).relative_error < 1
        assert _utils._blas_controller() is None
    finally:
        _utils._blas_controller.cache_clear()
