"""The "auto" choice: cache, static rule, switches. No outcome depends on timing:
where a test needs a winner, the measurement is replaced."""

import json

import keras
import numpy as np
import pytest

import fastconv
from fastconv.kernels import autotune
from fastconv.timing import Timing, make_forward
from tests.layer_checks import random_input


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """A private cache file, autotuning on, every layer big enough to measure
    and too big for the static rule's tiny-layer case."""
    from fastconv.kernels import policy

    path = tmp_path / "cache" / "autotune.json"
    monkeypatch.setenv("FASTCONV_AUTOTUNE_CACHE", str(path))
    monkeypatch.setenv("FASTCONV_AUTOTUNE", "1")
    monkeypatch.setattr(autotune, "MIN_MACS", 0)
    monkeypatch.setattr(policy, "DENSE_TINY_MACS", 0)
    return path


class FakeMeasure:
    """Stands in for the measurement: ``winner(request)`` names the fastest."""

    def __init__(self, winner):
        self.winner = winner
        self.requests = []

    def __call__(self, request):
        self.requests.append(request)
        best = self.winner(request)
        return {name: (0.001 if name == best else 0.002) for name in request.candidates}


@pytest.fixture
def fake(monkeypatch):
    def install(winner):
        measure = FakeMeasure(winner)
        monkeypatch.setattr(autotune, "_measure_request", measure)
        return measure

    return install


def _cp(**kwargs):
    return fastconv.CPConv2D(4, 3, rank=2, padding="same", **kwargs)


def test_cache_path_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTCONV_AUTOTUNE_CACHE", str(tmp_path / "a.json"))
    monkeypatch.setenv("FASTCONV_DATA_DIR", str(tmp_path / "data"))
    assert autotune.cache_path() == tmp_path / "a.json"
    monkeypatch.delenv("FASTCONV_AUTOTUNE_CACHE")
    assert autotune.cache_path() == tmp_path / "data" / "autotune.json"
    monkeypatch.delenv("FASTCONV_DATA_DIR")
    assert autotune.cache_path().parts[-3:] == (".cache", "fastconv", "autotune.json")


@pytest.mark.parametrize(
    "value, enabled", [("0", False), ("off", False), ("False", False), ("1", True)]
)
def test_autotune_switch(monkeypatch, value, enabled):
    monkeypatch.setenv("FASTCONV_AUTOTUNE", value)
    assert autotune.autotune_enabled() is enabled


def test_measures_once_then_reads_the_cache(fake, _cache):
    measure = fake(lambda request: "shift")
    x = random_input((2, 8, 8, 4))
    layer = _cp()
    layer(x)
    assert len(measure.requests) == 1
    assert layer._auto_choices == {((2, 8, 8, 4), False, "eager"): "shift"}
    data = json.loads(_cache.read_text())
    assert data["version"] == autotune.CACHE_VERSION
    ((key, entry),) = data["entries"].items()
    assert entry["choice"] == "shift"
    assert set(entry["median_s"]) == set(fastconv.CPConv2D.IMPLEMENTATIONS)
    key = json.loads(key)
    assert key["layer"] == "CPConv2D" and key["input_shape"] == [2, 8, 8, 4]
    assert key["mode"] == "forward" and key["backend"] == keras.backend.backend()
    assert key["versions"]["keras"] == keras.version()
    assert "name" not in key["config"] and key["config"]["rank"] == 2
    # A new layer of the same configuration and shape reads the cache.
    _cp(name="another")(x)
    assert len(measure.requests) == 1
    # Another batch size is another shape.
    _cp()(random_input((3, 8, 8, 4)))
    assert len(measure.requests) == 2
    assert not list(_cache.parent.glob(".autotune-*"))


def test_inference_and_training_choose_separately(fake):
    measure = fake(lambda request: "dense" if request.training else "shift")
    layer = _cp()
    x = random_input((2, 8, 8, 4))
    layer(x, training=False)
    layer(x, training=True)
    choices = {key[1]: impl for key, impl in layer._auto_choices.items()}
    assert choices == {False: "shift", True: "dense"}
    assert [r.training for r in measure.requests] == [False, True]


def test_corrupt_cache_is_ignored_with_a_warning_and_rebuilt(fake, _cache):
    measure = fake(lambda request: "dense")
    _cache.parent.mkdir(parents=True)
    _cache.write_text("{not json")
    with pytest.warns(UserWarning, match="corrupt autotune cache"):
        _cp()(random_input((2, 8, 8, 4)))
    assert len(measure.requests) == 1
    entries = json.loads(_cache.read_text())["entries"]
    assert [e["choice"] for e in entries.values()] == ["dense"]


@pytest.mark.parametrize(
    "content", ['{"version": 1}', '{"version": 99, "entries": {}}', "[1, 2]"]
)
def test_wrong_cache_structure_is_corrupt(_cache, content):
    _cache.parent.mkdir(parents=True)
    _cache.write_text(content)
    with pytest.warns(UserWarning, match="corrupt"):
        assert autotune.load_cache() == {}


def test_cached_choice_not_a_candidate_is_measured_again(fake, _cache):
    measure = fake(lambda request: "shift")
    x = random_input((2, 8, 8, 4))
    _cp()(x)
    data = json.loads(_cache.read_text())
    for entry in data["entries"].values():
        entry["choice"] = "fft"
    _cache.write_text(json.dumps(data))
    _cp()(x)
    assert len(measure.requests) == 2


def test_autotune_off_uses_the_static_rule(fake, monkeypatch, _cache):
    measure = fake(lambda request: "dense")
    monkeypatch.setenv("FASTCONV_AUTOTUNE", "0")
    layer = _cp()
    layer(random_input((2, 8, 8, 4)))
    assert measure.requests == []
    assert not _cache.exists()
    assert set(layer._auto_choices.values()) == {_static(fastconv.CPConv2D)}


def test_small_layers_use_the_static_rule(fake, monkeypatch):
    measure = fake(lambda request: "dense")
    monkeypatch.setattr(autotune, "MIN_MACS", 10**12)
    _cp()(random_input((2, 8, 8, 4)))
    assert measure.requests == []


def test_symbolic_calls_use_the_static_rule(fake):
    measure = fake(lambda request: "dense")
    layer = _cp()
    inputs = keras.Input((8, 8, 4))
    model = keras.Model(inputs, layer(inputs))
    assert measure.requests == []
    model(random_input((2, 8, 8, 4)))
    assert len(measure.requests) == 1


def test_concrete_implementation_never_measures(fake):
    measure = fake(lambda request: "dense")
    layer = _cp(implementation="shift")
    layer(random_input((2, 8, 8, 4)))
    assert measure.requests == []
    assert not layer._auto_choices


def _static(cls):
    """What the static rule gives for ``cls`` off XLA on this backend."""
    return cls.STATIC_RULE.get(keras.backend.backend(), cls.IMPLEMENTATIONS[0])


def test_static_rule_for_tiny_inference_on_eager_torch(monkeypatch):
    from fastconv.kernels import policy

    monkeypatch.setattr(policy, "DENSE_TINY_MACS", 5_000_000)  # the real value
    layer = fastconv.CPConv2D(32, 3, rank=8, padding="same")
    tiny, big = (1, 8, 8, 32), (64, 32, 32, 32)
    on_torch = keras.backend.backend() == "torch"
    # batch 1, 8x8x32: a Conv2D does 0.6 M multiply-adds, under DENSE_TINY_MACS
    assert layer._dense_macs(tiny) < policy.DENSE_TINY_MACS < layer._dense_macs(big)
    assert (layer.static_implementation(tiny, "eager") == "dense") == on_torch
    assert layer.static_implementation(tiny, "eager", training=True) != "dense"
    assert layer.static_implementation(big, "eager") != "dense"
    assert layer.static_implementation((None, 8, 8, 32), "eager") != "dense"


def test_static_rule():
    layer = fastconv.CPConv2D(64, 3, rank=16, padding="same")
    shape = (None, 32, 32, 64)
    assert layer.static_implementation(shape, "graph") == _static(fastconv.CPConv2D)
    assert layer.static_implementation(shape, "eager") == _static(fastconv.CPConv2D)
    assert layer.static_implementation(shape, "xla") == "shift"
    # Unknown spatial size: the layer's own rule, no dense fallback.
    assert layer.static_implementation((None, None, None, 64), "xla") == "shift"
    # A CP rank so large that it saves nothing: the dense kernel.
    big = fastconv.CPConv2D(16, 3, rank=64, padding="same")
    assert big.static_implementation((None, 8, 8, 16), "xla") == "dense"
    tucker = fastconv.TuckerConv2D(64, 3, rank=(16, 16))
    assert tucker.static_implementation(shape) == _static(fastconv.TuckerConv2D)
    assert (
        fastconv.TuckerConv2D(16, 3, rank=16).static_implementation((None, 8, 8, 16))
        == "dense"
    )
    separable = fastconv.DepthwiseSeparableConv2D(64, 3)
    assert separable.static_implementation(shape, "xla") == "shift"


def test_static_rule_reads_the_backend_entry(monkeypatch):
    rule = {keras.backend.backend(): "dense", "xla": "matmul"}
    monkeypatch.setattr(fastconv.CPConv2D, "STATIC_RULE", rule)
    layer = fastconv.CPConv2D(64, 3, rank=16)
    assert layer.static_implementation((None, 32, 32, 64), "eager") == "dense"
    assert layer.static_implementation((None, 32, 32, 64), "xla") == "matmul"
    monkeypatch.setattr(fastconv.CPConv2D, "STATIC_RULE", {})
    assert layer.static_implementation((None, 32, 32, 64), "xla") == "depthwise"


def test_nonlinear_layer_never_chooses_dense(fake):
    measure = fake(
        lambda request: "dense" if "dense" in request.candidates else "shift"
    )
    layer = fastconv.DepthwiseSeparableConv2D(8, 3, intermediate_activation="relu")
    layer(random_input((2, 8, 8, 4)))
    assert measure.requests[0].candidates == ("separable", "matmul", "shift")
    assert set(layer._auto_choices.values()) == {"shift"}
    tiny = fastconv.DepthwiseSeparableConv2D(
        4, 3, intermediate_batchnorm=True, implementation="auto"
    )
    assert tiny.static_implementation((None, 8, 8, 64)) != "dense"


def test_measures_for_real_inside_a_compiled_trace(_cache):
    """The measurement escapes a tf.function / jax.jit trace in progress."""
    layer = _cp()
    x = random_input((2, 8, 8, 4))
    layer.build(x.shape)
    run = make_forward(layer, x)
    y = keras.ops.convert_to_numpy(run())
    assert y.shape == (2, 8, 8, 4)
    (choice,) = set(layer._auto_choices.values())
    assert choice in layer.allowed_implementations()
    (entry,) = json.loads(_cache.read_text())["entries"].values()
    assert set(entry["median_s"]) == set(layer.allowed_implementations())
    assert all(t > 0 for t in entry["median_s"].values())


def test_measure_implementations_with_baseline():
    layer = _cp()
    timings = autotune.measure_implementations(
        layer,
        (1, 6, 6, 4),
        implementations=("shift", "dense"),
        baseline=keras.layers.Conv2D(4, 3, padding="same"),
        warmup=1,
        repeats=2,
        training=True,
    )
    assert list(timings) == ["shift", "dense", "baseline"]
    assert all(len(t.samples_ns) == 2 for t in timings.values())
    assert not layer.built


def test_budget_adds_rounds_for_cheap_layers_up_to_the_cap(monkeypatch):
    monkeypatch.setattr(autotune, "MAX_REPEATS", 7)
    timings = autotune.measure_implementations(
        _cp(),
        (1, 6, 6, 4),
        implementations=("shift", "dense"),
        warmup=1,
        repeats=2,
        budget_s=60.0,
    )
    # A tiny layer takes far less than 60 s a round: the cap decides (for
    # the implementations not dropped after the probe round).
    kept = [t for t in timings.values() if "dropped_after" not in t.extra]
    assert kept and all(len(t.samples_ns) == 7 for t in kept)
    timings = autotune.measure_implementations(
        _cp(), (1, 6, 6, 4), implementations=("shift",), repeats=3, budget_s=1e-9
    )
    assert len(timings["shift"].samples_ns) == 3


class FakeClock:
    """A clock that moves only when a candidate runs, by that candidate's cost:
    the budget tests then do not depend on the machine's speed."""

    def __init__(self):
        self.now_ns = 0
        self.calls = {}

    def __call__(self):
        return self.now_ns

    def candidate(self, name, *costs_ms):
        """A function costing ``costs_ms[i]`` on its i-th call (the last cost
        for every call after those)."""
        self.calls[name] = 0

        def run():
            cost = costs_ms[min(self.calls[name], len(costs_ms) - 1)]
            self.calls[name] += 1
            self.now_ns += round(cost * 1_000_000)

        return run


def _fastest(timings):
    kept = {n: t for n, t in timings.items() if "dropped_after" not in t.extra}
    return min(kept, key=lambda name: kept[name].median)


def _contest(clock):
    return {
        "fast": clock.candidate("fast", 20),
        "close": clock.candidate("close", 24),
        "slow": clock.candidate("slow", 200),
        "baseline": clock.candidate("baseline", 50),
    }


def test_budget_drops_clear_losers_after_the_probe_round():
    clock = FakeClock()
    fns = _contest(clock)
    # A round (294 ms) is more than a tenth of a 2 s budget: one probe round,
    # after one untimed warm-up round.
    timings = autotune._budgeted(fns, 2, 2, 2.0, keep=("baseline",), clock=clock)
    assert list(timings) == list(fns)
    # 200 ms against 20 ms: dropped after the warm-up and the probe round.
    assert timings["slow"].extra == {"dropped_after": "probe round"}
    assert timings["slow"].samples_ns == (200_000_000,)
    assert clock.calls["slow"] == 2
    # Kept: a round of the rest takes 94 ms, so 2 s buys int(2 / 0.094) = 21.
    for name in ("fast", "close", "baseline"):
        assert len(timings[name].samples_ns) == 21 and clock.calls[name] == 23
        assert "dropped_after" not in timings[name].extra
    assert timings["close"].median == 0.024
    assert _fastest(timings) == "fast"


def test_budget_rounds_stop_at_the_cap(monkeypatch):
    monkeypatch.setattr(autotune, "MAX_REPEATS", 6)
    clock = FakeClock()
    fns = _contest(clock)
    # Under a tenth of a 60 s budget: PROBE_ROUNDS more probe rounds decide;
    # 60 s would buy 638 rounds of 94 ms, the cap allows 6.
    timings = autotune._budgeted(fns, 2, 2, 60.0, keep=("baseline",), clock=clock)
    probes = autotune.PROBE_ROUNDS
    assert probes == 3
    assert timings["slow"].extra == {"dropped_after": "probe round"}
    assert timings["slow"].samples_ns == (200_000_000,) * probes
    assert clock.calls["slow"] == 1 + 1 + probes
    for name in ("fast", "close", "baseline"):
        assert len(timings[name].samples_ns) == 6
        assert clock.calls[name] == 1 + 1 + probes + 6
    assert _fastest(timings) == "fast"


def test_budget_rounds_never_fall_below_repeats():
    clock = FakeClock()
    fns = {"a": clock.candidate("a", 30), "b": clock.candidate("b", 20)}
    # A 10 ms budget buys no round of 50 ms: ``repeats`` (4) is the floor.
    timings = autotune._budgeted(fns, 1, 4, 0.01, clock=clock)
    assert {name: len(t.samples_ns) for name, t in timings.items()} == {
        "a": 4,
        "b": 4,
    }
    assert clock.calls == {"a": 5, "b": 5}
    assert _fastest(timings) == "b"


def test_probe_rounds_keep_a_candidate_one_slow_sample_would_drop(monkeypatch):
    monkeypatch.setattr(autotune, "MAX_REPEATS", 3)
    clock = FakeClock()
    # 10x slower on its second call only, the single probe round: alone, that
    # sample (100 ms against 12 ms) would drop the fastest candidate.
    fns = {
        "first": clock.candidate("first", 10, 100, 10),
        "second": clock.candidate("second", 12),
    }
    timings = autotune._budgeted(fns, 2, 2, 60.0, clock=clock)
    assert "dropped_after" not in timings["first"].extra
    assert timings["first"].samples_ns == (10_000_000,) * 3
    assert clock.calls == {"first": 2 + 3 + 3, "second": 2 + 3 + 3}
    assert _fastest(timings) == "first"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(input_shape=(None, 6, 6, 4)), "input_shape must be a sequence of pos"),
        (dict(input_shape=(1, 0, 6, 4)), r"received input_shape=\(1, 0, 6, 4\)"),
        (
            dict(input_shape=(1, 6, 6, 4), implementations=("fft",)),
            "no implementation 'fft'",
        ),
    ],
)
def test_measure_implementations_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        autotune.measure_implementations(_cp(), **kwargs)


def test_compilation_mode_is_eager_outside_traces():
    assert autotune.compilation_mode(np.zeros(1)) == "eager"


def test_failed_measurement_warns_and_uses_the_static_rule(monkeypatch, _cache):
    def broken(request):
        raise RuntimeError("no kernel")

    monkeypatch.setattr(autotune, "_measure_request", broken)
    layer = _cp()
    with pytest.warns(UserWarning, match="no kernel.*using the static rule's"):
        layer(random_input((2, 8, 8, 4)))
    assert not _cache.exists()


def test_speedup_over(monkeypatch):
    seen = {}

    def measure(layer, input_shape, **kwargs):
        seen.update(kwargs, input_shape=input_shape)
        medians_ms = {"depthwise": 4, "fused": 1.5, "shift": 2, "baseline": 6}
        return {
            name: Timing((round(ms * 1_000_000),)) for name, ms in medians_ms.items()
        }

    monkeypatch.setattr(autotune, "measure_implementations", measure)
    baseline = keras.layers.Conv2D(4, 3, padding="same")
    speedup, best = autotune.speedup_over(
        baseline, _cp(), (1, 6, 6, 4), training=True, warmup=1, repeats=2
    )
    assert (speedup, best) == (4.0, "fused")
    assert seen == dict(
        input_shape=(1, 6, 6, 4),
        training=True,
        baseline=baseline,
        jit=True,
        warmup=1,
        repeats=2,
    )


def test_speedup_over_measures_every_implementation():
    speedup, best = autotune.speedup_over(
        keras.layers.Conv2D(4, 3, padding="same"),
        _cp(),
        (1, 6, 6, 4),
        warmup=1,
        repeats=2,
    )
    assert np.isfinite(speedup)
    assert best in fastconv.CPConv2D.IMPLEMENTATIONS


def test_compilation_mode_inside_traces():
    backend = keras.backend.backend()
    seen = {}
    if backend == "tensorflow":
        import tensorflow as tf

        for jit in (True, False):

            def probe(x, jit=jit):
                seen[jit] = autotune.compilation_mode(x)
                return x

            tf.function(probe, jit_compile=jit)(tf.zeros(1))
        assert seen == {True: "xla", False: "graph"}
    elif backend == "jax":
        import jax

        def probe(x):
            seen["jit"] = autotune.compilation_mode(x)
            return x

        jax.jit(probe)(np.zeros(1))
        assert seen == {"jit": "xla"}
    else:
        assert autotune.compilation_mode(keras.ops.zeros(1)) == "eager"
