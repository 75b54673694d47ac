import keras
import numpy as np
import pytest

from fastconv import timing


def test_interleaved_keeps_every_sample_and_shuffles_order():
    calls = []
    fns = {name: (lambda n=name: calls.append(n)) for name in "abcd"}
    result = timing.interleaved(fns, warmup=1, repeats=40, sync=False)
    assert list(result) == list("abcd")
    assert all(len(t.samples_ns) == 40 and t.warmup == 1 for t in result.values())
    # one warm-up round in order, then every function once in every round
    assert calls[:4] == list("abcd")
    rounds = [tuple(calls[i : i + 4]) for i in range(4, len(calls), 4)]
    assert all(sorted(r) == list("abcd") for r in rounds)
    # the order changes: "a" is not always preceded by the same function
    predecessors = {r[r.index("a") - 1] for r in rounds if r[0] != "a"}
    assert len(predecessors) > 1
    assert len(set(rounds)) > 5
    # and is repeatable for one seed, different for another
    again = []
    fns_again = {name: (lambda n=name: again.append(n)) for name in "abcd"}
    timing.interleaved(fns_again, warmup=1, repeats=40, sync=False)
    assert again == calls
    other = []
    fns_other = {name: (lambda n=name: other.append(n)) for name in "abcd"}
    timing.interleaved(fns_other, warmup=1, repeats=40, sync=False, seed=1)
    assert other != calls


def test_timing_summary_statistics():
    t = timing.Timing(tuple(int(v * 1e9) for v in [1.0, 2.0, 3.0, 4.0, 100.0]))
    assert t.median == 3.0
    assert t.min == 1.0 and t.max == 100.0
    assert t.p10 < t.median < t.p90
    data = t.as_dict()
    assert data["samples_ns"] == list(t.samples_ns)
    assert timing.timing_from_dict(data) == timing.Timing(t.samples_ns, 0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(warmup=-1, repeats=2), "warmup must be an int >= 0, received warmup=-1"),
        (dict(warmup=0, repeats=0), "repeats must be an int >= 1, received repeats=0"),
        (dict(warmup=0, repeats=1.5), "received repeats=1.5"),
    ],
)
def test_bad_counts(kwargs, message):
    with pytest.raises(ValueError, match=message):
        timing.measure(lambda: None, **kwargs)


def test_forward_and_grad_step_run_on_this_backend():
    layer = keras.layers.Conv2D(4, 3)
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype("float32")
    forward = timing.make_forward(layer, x)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(forward()),
        keras.ops.convert_to_numpy(layer(x)),
        rtol=1e-5,
        atol=1e-5,
    )
    grads = timing.block(timing.make_grad_step(layer, x)())
    flat = timing._leaves(grads)
    assert len(flat) == 1 + len(layer.trainable_variables)
    assert flat[0].shape == x.shape


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_grad_step_runs_under_a_mixed_policy(policy):
    import fastconv

    keras.config.set_dtype_policy(policy)
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 4)).astype("float32")
    for layer in (keras.layers.Conv2D(4, 3), fastconv.CPConv2D(4, 3, rank=2)):
        grads = timing._leaves(timing.block(timing.make_grad_step(layer, x)()))
        assert len(grads) == 1 + len(layer.trainable_variables)
        assert all(
            np.isfinite(keras.ops.convert_to_numpy(g).astype("float32")).all()
            for g in grads
        )


def test_grad_step_is_the_vjp_with_a_fixed_seeded_output_gradient():
    layer = keras.layers.Dense(3)
    x = np.random.default_rng(1).standard_normal((2, 4)).astype("float32")
    layer.build(x.shape)
    grads = [
        keras.ops.convert_to_numpy(g)
        for g in timing._leaves(timing.block(timing.make_grad_step(layer, x)()))
    ]
    g = np.random.default_rng(0).standard_normal((2, 3)).astype("float32")
    w = keras.ops.convert_to_numpy(layer.kernel)
    np.testing.assert_allclose(grads[0], g @ w.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads[1], x.T @ g, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads[2], g.sum(0), rtol=1e-5, atol=1e-5)


def test_grad_step_leaves_batchnorm_statistics_as_they_were():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(3, 3),
            keras.layers.BatchNormalization(),
        ]
    )
    x = np.random.default_rng(0).standard_normal((4, 6, 6, 2)).astype("float32") + 5
    before = [np.array(w) for w in model.get_weights()]
    step = timing.make_grad_step(model, x, jit=False)
    for _ in range(2):
        grads = [np.asarray(g) for g in keras.tree.flatten(step())]
    assert len(grads) == 1 + len(model.trainable_variables)
    assert all(np.isfinite(g).all() and np.abs(g).sum() > 0 for g in grads)
    for got, want in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)


def test_environment_records_what_results_need():
    env = timing.environment()
    for key in ("date", "backend", "device", "precision", "versions", "git_commit"):
        assert key in env
    assert env["backend"] == keras.backend.backend()
    assert env["versions"]["keras"] == keras.__version__


def test_block_returns_its_argument_for_any_nesting_and_empty_tensors():
    value = {
        "a": [keras.ops.zeros((0, 3)), keras.ops.ones((4, 5))],
        "b": (None, np.ones(2), 1.5),
        "c": keras.Variable(np.ones((2, 2))),
    }
    assert timing.block(value) is value
    out = timing.block(keras.ops.ones((3,)) * 2)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out), [2.0, 2.0, 2.0])
