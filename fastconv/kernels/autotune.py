"""Choosing how to compute a layer: measured once per shape, cached on disk.

A fastconv layer with ``implementation="auto"`` asks ``choose`` which of its
concrete implementations to run for an input shape, the first time it sees
that shape in a given mode (inference or a training step). ``choose``:

1. returns the *static rule* (``Request.static``) when autotuning is off
   (``FASTCONV_AUTOTUNE=0``), when a dimension of the input is unknown (a
   symbolic trace), inside Keras's symbolic scope (building a functional
   model), or when the layer is too small for a measurement to matter
   (``MIN_MACS``);
2. else looks the request up in the cache file;
3. else returns the static rule when measuring is forbidden: inside
   ``no_measuring()`` (``fastconv.export_model`` exports in it) or while
   Keras's ``model.export`` traces the model (an exported file is the same
   whatever this machine measures, and a trace must not pause for timings);
4. else measures every candidate, interleaved with the shared clock
   (``fastconv.timing``), on throwaway clones of the layer fed random data of
   that shape, and stores the fastest in the cache.

The measurement runs in a fresh thread: a ``tf.function`` or ``jax.jit`` trace
in progress belongs to the calling thread, so the clones run eagerly and
compiled as they would be outside it. Only shapes are needed.

The cache is a JSON file, ``$FASTCONV_AUTOTUNE_CACHE`` if set, else
``autotune.json`` in ``$FASTCONV_DATA_DIR`` (default ``~/.cache/fastconv``).
Its keys hold everything the timing depends on: backend, device, how the code
is compiled (XLA, TensorFlow graph, eager), dtypes, the layer class and the
configuration that shapes its computation, the input shape with the batch
size, the mode, and the library versions. It is written atomically (temporary
file, then rename), merged with what another process wrote meanwhile. No
state of the file breaks a layer call: a corrupt file (not UTF-8, not JSON,
not a cache) is ignored with one ``AutotuneCacheWarning`` naming it, moved
aside to ``<name>.corrupt`` and rebuilt; an unreadable or unwritable one (a
directory in its place, no permission, a read-only folder) gives one warning
and the measurements are kept in memory for the process.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastconv import _keras_graph, timing
from fastconv._files import chmod_as_created

__all__ = [
    "MIN_MACS",
    "AutotuneCacheWarning",
    "Request",
    "autotune_enabled",
    "cache_path",
    "choose",
    "compilation_mode",
    "load_cache",
    "measure_implementations",
    "measuring_allowed",
    "no_measuring",
    "speedup_over",
]

#: Layers doing fewer multiply-adds per call than this use the static rule.
#: It was 5 million, for fear that small layers' times were mostly noise; at
#: the benchmark grid's smallest point (batch 1, 8x8x32: 33 k to 393 k
#: multiply-adds per layer, 0.6 M for the Conv2D) measuring chose better than
#: the static rule on every backend (TensorFlow CP 0.91x of Conv2D instead of
#: 0.73x, FactorizedConv2D 1.04x instead of 0.86x; PyTorch CP training step
#: 0.74x instead of 0.66x; JAX FactorizedConv2D 0.98x instead of 0.80x), so
#: only trivial layers skip it.
MIN_MACS = 10_000
#: Warm-up rounds (compilation included) and measured rounds per candidate.
WARMUP = 2
REPEATS = 5
#: A measurement for ``"auto"`` adds rounds, up to ``MAX_REPEATS``, until the
#: measured rounds take about this long: cheap layers are timed more often,
#: because their times are short and noisy.
BUDGET_S = 0.5
#: The cap was 40 rounds. At batch 1, 8x8x32 (0.1 ms a call) on JAX, eight
#: budgeted measurements of ``FactorizedConv2D`` picked three different
#: winners with 40 rounds and the same one seven times in eight with 400,
#: the one a 2000-round measurement found fastest; the budget, not the cap,
#: bounds the time.
MAX_REPEATS = 400
#: With a budget, candidates that take more than this times the fastest one's
#: time in the probe rounds are dropped from the remaining rounds: the
#: budget goes to the close contenders (at the reference shape, ``dense`` and
#: ``shift`` took most of a round on TensorFlow, and held the three that
#: mattered to the minimum of five rounds).
DROP_ABOVE = 2.0
#: The probe is one timed round, or this many (their median) when one round
#: takes under a tenth of the budget: a single sample of a call of a tenth of
#: a millisecond can be several times its usual time (on JAX, a budgeted
#: measurement of ``FactorizedConv2D`` at batch 1, 8x8x32 put ``dense`` at
#: 0.18x of ``Conv2D``'s speed, where a 2000-round one found 0.89x).
PROBE_ROUNDS = 3
CACHE_VERSION = 1

_LOCK = threading.Lock()
#: How many ``no_measuring()`` blocks are open, in any thread.
_FORBIDDEN = 0


@dataclass(frozen=True)
class Request:
    """What ``choose`` needs to know about one layer call.

    Attributes:
        layer: the layer (its class, ``get_config()`` and ``dtype_policy`` are
            read; it is never called).
        input_shape: the input's shape, batch included; ``None`` entries mean
            unknown.
        dtype: the input's dtype name.
        training: True for a training step (forward and backward pass).
        candidates: the implementations to choose from.
        static: the static rule's choice, one of ``candidates``.
        macs: multiply-adds of the layer for this call (whole batch).
        compilation: ``compilation_mode()`` of the call.
        config: the part of the layer's configuration its speed depends on.
    """

    layer: object
    input_shape: tuple
    dtype: str
    training: bool
    candidates: tuple[str, ...]
    static: str
    macs: int
    compilation: str
    config: Mapping

    def key(self) -> str:
        """The cache key: a canonical JSON string of everything timed."""
        return json.dumps(
            {
                **_platform(),
                "compilation": self.compilation,
                "dtype": self.dtype,
                "compute_dtype": self.layer.dtype_policy.compute_dtype,
                "layer": type(self.layer).__name__,
                "config": self.config,
                "input_shape": list(self.input_shape),
                "mode": "train" if self.training else "forward",
                "candidates": list(self.candidates),
            },
            sort_keys=True,
            default=str,
        )


_OFF = ("0", "false", "no", "off")
_ON = ("", "1", "true", "yes", "on")


def autotune_enabled() -> bool:
    """False when ``FASTCONV_AUTOTUNE`` is ``0``, ``false``, ``no`` or ``off``;
    True when unset or ``1``, ``true``, ``yes``, ``on``. Any other value warns
    once (naming the variable and the value) and counts as unset."""
    raw = os.environ.get("FASTCONV_AUTOTUNE", "1")
    value = raw.strip().lower()
    if value in _OFF:
        return False
    key = f"FASTCONV_AUTOTUNE={raw!r}"
    if value not in _ON and key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(
            "fastconv: FASTCONV_AUTOTUNE must be one of 0, false, no, off (measure "
            f"nothing) or 1, true, yes, on (measure), received "
            f"FASTCONV_AUTOTUNE={raw!r}; measuring as if it were unset",
            stacklevel=3,
        )
    return True


def cache_path() -> Path:
    """``$FASTCONV_AUTOTUNE_CACHE``, else ``autotune.json`` in the data directory.

    A variable that is empty or only blanks counts as unset (a blank path
    would name a file in the working directory)."""
    configured = os.environ.get("FASTCONV_AUTOTUNE_CACHE", "").strip()
    if configured:
        return Path(configured).expanduser()
    data_dir = os.environ.get("FASTCONV_DATA_DIR", "").strip()
    base = Path(data_dir).expanduser() if data_dir else Path.home() / ".cache/fastconv"
    return base / "autotune.json"


def compilation_mode(tensor=None) -> str:
    """How the code running now is compiled: ``"xla"``, ``"graph"`` or ``"eager"``.

    ``"xla"`` inside ``jax.jit`` (``tensor`` is then a tracer) and inside a
    ``tf.function(jit_compile=True)``; ``"graph"`` inside any other
    ``tf.function``; ``"eager"`` otherwise (and always on PyTorch).
    """
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return "xla" if isinstance(tensor, jax.core.Tracer) else "eager"
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.executing_eagerly():
            return "eager"
        try:
            from tensorflow.python.ops import control_flow_util

            graph = tf.compat.v1.get_default_graph()
            if control_flow_util.GraphOrParentsInXlaContext(graph):
                return "xla"
        except (ImportError, AttributeError):
            pass
        return "graph"
    return "eager"


def _in_symbolic_scope() -> bool:
    return _keras_graph.in_symbolic_scope()


@contextlib.contextmanager
def no_measuring():
    """A block in which ``choose`` measures nothing, in any thread.

    Layers still use a choice found in the cache file, and the static rule
    otherwise. Blocks may nest.

    Example:
        >>> with no_measuring():
        ...     measuring_allowed()
        False
    """
    global _FORBIDDEN
    with _LOCK:
        _FORBIDDEN += 1
    try:
        yield
    finally:
        with _LOCK:
            _FORBIDDEN -= 1


def measuring_allowed() -> bool:
    """False inside ``no_measuring()`` and while Keras exports a model
    (``model.export``); True otherwise. ``FASTCONV_AUTOTUNE`` is not read
    here (see ``autotune_enabled``)."""
    return _FORBIDDEN == 0 and not _keras_graph.in_export()


def choose(request: Request, measure: Callable | None = None) -> str:
    """The implementation to run for ``request`` (see the module docstring).

    Args:
        request: the layer call.
        measure: replaces ``measure_implementations`` (tests use it to fix the
            winner); called as ``measure(request)`` and returns name -> seconds.
    """
    if (
        len(request.candidates) == 1
        or not autotune_enabled()
        or any(d is None for d in request.input_shape)
        or request.macs < MIN_MACS
        or _in_symbolic_scope()
    ):
        return request.static
    key = request.key()
    path = cache_path()
    with _LOCK:
        entry = load_cache(path).get(key)
    if isinstance(entry, Mapping) and entry.get("choice") in request.candidates:
        return entry["choice"]
    if not measuring_allowed():
        return request.static
    measure = measure or _measure_request
    try:
        times = measure(request)
    except Exception as exc:  # a failed measurement must not break the model
        warnings.warn(
            f"fastconv: measuring {type(request.layer).__name__} on input shape "
            f"{request.input_shape} failed ({type(exc).__name__}: {exc}); using "
            f"the static rule's {request.static!r}",
            stacklevel=2,
        )
        return request.static
    choice = min(times, key=times.get)
    with _LOCK:
        _store(path, key, {"choice": choice, "median_s": dict(times)})
    return choice


class AutotuneCacheWarning(UserWarning):
    """The autotune cache file could not be read or written; the layer call
    goes on, measuring again and keeping the result in memory."""


#: Entries measured in this process that could not be written, by cache path.
_MEMORY: dict[str, dict] = {}
#: Cache paths already warned about: one warning per file and process.
_WARNED: set[str] = set()


def _warn(path: Path, problem: str, detail: str) -> None:
    if str(path) in _WARNED:
        return
    _WARNED.add(str(path))
    adjective = "corrupt " if problem == "corrupt" else ""
    warnings.warn(
        f"fastconv: {adjective}autotune cache {path}: {detail}",
        AutotuneCacheWarning,
        stacklevel=4,
    )


def _valid_entry(entry) -> bool:
    return isinstance(entry, Mapping) and isinstance(entry.get("choice"), str)


def _read(path: Path) -> tuple[dict, str | None, str]:
    """The file's valid entries, and what is wrong with it: ``(entries, problem,
    detail)``; ``problem`` is None, ``"unreadable"``, ``"corrupt"`` or
    ``"entries"`` (some entries malformed)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}, None, ""
    except IsADirectoryError:
        return {}, "unreadable", "is a directory, not a file"
    except OSError as exc:
        return {}, "unreadable", f"cannot be read ({type(exc).__name__}: {exc})"
    try:
        data = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return {}, "corrupt", f"is not JSON text ({type(exc).__name__}: {exc})"
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}, "corrupt", f"is not a version-{CACHE_VERSION} autotune cache"
    entries = data.get("entries")
    if not isinstance(entries, dict):
        return {}, "corrupt", "its 'entries' is not a mapping"
    valid = {key: entry for key, entry in entries.items() if _valid_entry(entry)}
    if len(valid) < len(entries):
        bad = len(entries) - len(valid)
        return valid, "entries", f"{bad} malformed entries ignored"
    return valid, None, ""


def load_cache(path: Path | None = None) -> dict:
    """The cache's entries (key -> entry), with those measured in this process
    that could not be written.

    A file that cannot be read (a directory, no permission), is not UTF-8 JSON,
    or is not a cache (a list, a number, no ``entries``) counts as empty and
    gives one `AutotuneCacheWarning` naming it; malformed entries are skipped
    with one. Nothing here raises: the layer call that asked goes on.
    """
    path = cache_path() if path is None else Path(path)
    entries, problem, detail = _read(path)
    if problem == "corrupt":
        detail += (
            f"; ignored, moved aside to {path.name}.corrupt and rebuilt when its "
            "folder is writable"
        )
    elif problem == "unreadable":
        detail += "; ignored, rebuilt if it can be written, else kept in memory"
    if problem is not None:
        _warn(path, problem, detail)
    return {**entries, **_MEMORY.get(str(path), {})}


def _store(path: Path, key: str, entry: dict) -> None:
    """Adds ``entry`` to the cache file, merged with what another process wrote
    meanwhile, atomically (a temporary file in the same folder, then
    ``os.replace``). A corrupt file is first moved aside to ``<name>.corrupt``
    (for a post-mortem) and the cache rebuilt. When the file cannot be written
    (a read-only or missing folder that cannot be created, a directory in its
    place), one `AutotuneCacheWarning` says so and the entry is kept in memory
    for the rest of the process."""
    entries, problem, _ = _read(path)
    if problem == "corrupt":
        # Kept for a post-mortem; where it cannot be moved the write below
        # replaces it, or fails and keeps the entry in memory.
        with contextlib.suppress(OSError):
            os.replace(path, path.with_name(path.name + ".corrupt"))
    entries = {**entries, **_MEMORY.get(str(path), {}), key: entry}
    text = json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=1)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".autotune-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        chmod_as_created(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        _MEMORY.setdefault(str(path), {})[key] = entry
        _warn(
            path,
            "unwritable",
            f"cannot be written ({type(exc).__name__}: {exc}); measurements are "
            "kept in memory for this process",
        )
        return
    _MEMORY.pop(str(path), None)


def _platform() -> dict:
    import keras

    backend = keras.backend.backend()
    versions = timing.environment()["versions"]
    return {
        "backend": backend,
        "device": timing.device_description(),
        "versions": {
            name: versions.get(name) for name in ("fastconv", "keras", backend)
        },
    }


def measure_implementations(
    layer,
    input_shape: Sequence[int],
    *,
    training: bool = False,
    implementations: Sequence[str] | None = None,
    baseline=None,
    jit: bool = True,
    dtype: str = "float32",
    warmup: int = WARMUP,
    repeats: int = REPEATS,
    budget_s: float | None = None,
) -> dict[str, timing.Timing]:
    """Time each implementation of ``layer`` on random data, interleaved.

    Each implementation runs on a fresh clone of ``layer`` (same config, its
    own random weights), compiled as ``fastconv.timing.make_forward`` /
    ``make_grad_step`` compile it. Runs in a fresh thread, so it may be called
    while a ``tf.function`` or ``jax.jit`` trace is in progress.

    Args:
        layer: a fastconv layer (built or not).
        input_shape: the full input shape, batch included.
        training: time a training step (forward and backward) instead of
            inference.
        implementations: names to time; default every one the layer allows.
        baseline: optionally another layer (say the ``keras.layers.Conv2D``
            being replaced), timed in the same rounds under the name
            ``"baseline"``.
        jit: compile with XLA on TensorFlow (JAX always does).
        dtype: dtype of the random input.
        warmup, repeats: as for ``fastconv.timing.interleaved``.
        budget_s: if given, the last warm-up round is timed (the probe; when
            it took under a tenth of ``budget_s``, ``PROBE_ROUNDS`` more
            rounds are timed and their medians count instead); implementations
            that took more than ``DROP_ABOVE`` times the fastest one are not
            run again (their ``Timing`` is the probe's samples, with
            ``extra["dropped_after"] = "probe round"``), and the rounds of the
            others are raised from ``repeats`` (up to ``MAX_REPEATS``) until
            they take about this many seconds. The baseline is never dropped.

    Returns:
        name -> ``Timing``, raw samples included.
    """
    shape = tuple(input_shape)
    if not shape or any(not isinstance(d, int | np.integer) or d < 1 for d in shape):
        raise ValueError(
            "measure_implementations: input_shape must be a sequence of positive "
            f"ints, received input_shape={input_shape!r}"
        )
    names = tuple(implementations or layer.allowed_implementations())
    unknown = [n for n in names if n not in layer.allowed_implementations()]
    if unknown:
        raise ValueError(
            f"measure_implementations: {type(layer).__name__} has no implementation "
            f"{unknown[0]!r}, received implementations={implementations!r}"
        )

    def run():
        x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
        make = timing.make_grad_step if training else timing.make_forward
        fns = {}
        for name in names:
            config = {**layer.get_config(), "implementation": name}
            config.pop("name", None)
            fns[name] = make(type(layer).from_config(config), x, jit=jit)
        if baseline is not None:
            fns["baseline"] = make(baseline, x, jit=jit)
        if budget_s is None:
            return timing.interleaved(fns, warmup=warmup, repeats=repeats)
        return _budgeted(fns, warmup, repeats, budget_s, keep=("baseline",))

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def _budgeted(
    fns, warmup, repeats, budget_s, keep=(), clock=time.perf_counter_ns
) -> dict[str, timing.Timing]:
    """``timing.interleaved`` with a time budget, dropping clear losers (see
    ``measure_implementations``); ``keep`` names functions never dropped,
    ``clock`` is ``timing.interleaved``'s."""
    # The last warm-up round, timed, says how long a round takes; cheap
    # rounds are probed more than once.
    probe = timing.interleaved(fns, warmup=max(warmup - 1, 0), repeats=1, clock=clock)
    if sum(t.median for t in probe.values()) < budget_s / 10:
        probe = timing.interleaved(fns, warmup=0, repeats=PROBE_ROUNDS, clock=clock)
    contenders = [t.median for name, t in probe.items() if name not in keep]
    fastest = min(contenders) if contenders else 0.0
    live = {
        name: fn
        for name, fn in fns.items()
        if name in keep or probe[name].median <= DROP_ABOVE * fastest
    }
    per_round = sum(probe[name].median for name in live)
    wanted = int(budget_s / max(per_round, 1e-9))
    rounds = max(repeats, min(MAX_REPEATS, wanted))
    timings = timing.interleaved(live, warmup=0, repeats=rounds, clock=clock)
    return {
        name: timings[name]
        if name in live
        else timing.Timing(
            probe[name].samples_ns, probe[name].warmup, {"dropped_after": "probe round"}
        )
        for name in fns
    }


def _measure_request(request: Request) -> dict[str, float]:
    timings = measure_implementations(
        request.layer,
        request.input_shape,
        training=request.training,
        implementations=request.candidates,
        jit=request.compilation == "xla",
        dtype=request.dtype,
        budget_s=BUDGET_S,
    )
    return {name: t.median for name, t in timings.items()}


def speedup_over(
    baseline,
    layer,
    input_shape: Sequence[int],
    *,
    training: bool = False,
    jit: bool = True,
    warmup: int = WARMUP,
    repeats: int = REPEATS,
) -> tuple[float, str]:
    """How many times faster ``layer`` runs than ``baseline``, at its best.

    Times ``baseline`` (say the ``keras.layers.Conv2D`` that ``layer`` would
    replace) and every implementation ``layer`` allows, interleaved, with
    ``measure_implementations``; "auto" would pick the fastest of them.

    Returns:
        ``(baseline median / fastest implementation's median, its name)``.
    """
    timings = measure_implementations(
        layer,
        input_shape,
        training=training,
        baseline=baseline,
        jit=jit,
        warmup=warmup,
        repeats=repeats,
    )
    base = timings.pop("baseline").median
    best = min(timings, key=lambda name: timings[name].median)
    return base / timings[best].median, best
