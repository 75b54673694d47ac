"""Where the benchmark computes: hiding GPUs (``--device cpu``), requiring one
(``--device gpu``), the data-parallel strategy (``--distribute mirrored`` or
``multi-worker``), and
the description of the device the results record (`fastconv.timing`: the CPU
model and its vector extensions, or the GPU name).
"""

from __future__ import annotations

import contextlib
import os

import keras

from fastconv import _keras_graph, timing
from fastconv.bench.config import DEVICES, BenchError
from fastconv.convert import cluster

__all__ = ["select_device"]


def select_device(device: str) -> str:
    """Makes the Keras backend compute on ``device``; returns what it uses.

    ``cpu`` hides GPUs before the backend initialises them: the environment
    (``CUDA_VISIBLE_DEVICES``, ``KERAS_TORCH_DEVICE``) and
    ``tf.config.set_visible_devices`` / ``jax_platforms``. ``gpu`` checks that
    the backend sees one. Call it before any model is built.

    Raises:
        BenchError: a ``device`` other than ``auto``, ``cpu`` or ``gpu``;
            ``gpu`` and no GPU visible, or GPUs that can no longer be hidden
            (the backend already initialised them); both name the backend.
    """
    if not isinstance(device, str) or device not in DEVICES:
        raise BenchError(
            f"device must be one of {', '.join(DEVICES)}, received device={device!r}"
        )
    backend = keras.backend.backend()
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        os.environ["KERAS_TORCH_DEVICE"] = "cpu"
        _hide_gpus(backend)
    elif device == "gpu":
        found, how = _gpus(backend)
        if not found:
            raise BenchError(
                f"--device gpu: the {backend} backend sees no GPU ({how}); install "
                "the backend's CUDA build (pip install -e '.[gpu]' for TensorFlow) "
                "and check CUDA_VISIBLE_DEVICES, or use --device cpu/auto"
            )
    return timing.device_description()


def _gpus(backend: str) -> tuple[list, str]:
    if backend == "tensorflow":
        import tensorflow as tf

        found = tf.config.list_logical_devices("GPU")
        return found, f"tf.config.list_logical_devices('GPU') returned {found}"
    if backend == "jax":
        import jax

        try:
            found = jax.devices("gpu")
        except RuntimeError:
            found = []
        how = f"jax.devices('gpu') found none; platform {jax.default_backend()}"
        return found, how
    if backend == "torch":
        import torch

        found = list(range(torch.cuda.device_count()))
        return found, f"torch.cuda.device_count() is {len(found)}"
    return [], f"unsupported backend {backend!r}"


def _hide_gpus(backend: str) -> None:
    fix = "set CUDA_VISIBLE_DEVICES= in the environment before starting fastconv"
    if backend == "tensorflow":
        import tensorflow as tf

        with contextlib.suppress(RuntimeError):  # raised once devices are set up
            tf.config.set_visible_devices([], "GPU")
        if tf.config.list_logical_devices("GPU"):
            raise BenchError(
                "--device cpu: TensorFlow had already initialised its GPUs and can "
                f"no longer hide them; {fix}"
            )
    elif backend == "jax":
        import jax

        with contextlib.suppress(RuntimeError):  # raised once backends exist
            jax.config.update("jax_platforms", "cpu")
        if jax.default_backend() != "cpu":
            raise BenchError(
                f"--device cpu: JAX had already initialised its {jax.default_backend()}"
                f" backend and can no longer hide it; {fix} (or JAX_PLATFORMS=cpu)"
            )
    elif backend == "torch":
        device = _keras_graph.torch_device()
        if device != "cpu":
            raise BenchError(
                f"--device cpu: Keras' torch backend chose {device!r} "
                f"when it was imported; {fix} (or KERAS_TORCH_DEVICE=cpu)"
            )


# -------------------------------------------------------------- distribution
@contextlib.contextmanager
def _distribution(kind: str):
    """Yields ``(scope, replicas)``: a context for building models, and the
    number of devices the data is split over."""
    if kind == "none":
        yield contextlib.nullcontext, 1
        return
    if kind == "multi-worker":
        workers = _join_cluster()
        yield workers.scope, workers.replicas
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        devices = tf.config.list_logical_devices(
            "GPU"
        ) or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
        yield strategy.scope, strategy.num_replicas_in_sync
    elif backend == "jax":
        devices = keras.distribution.list_devices()
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices)
        )
        try:
            yield contextlib.nullcontext, len(devices)
        finally:
            keras.distribution.set_distribution(previous)
    else:
        raise BenchError(
            f"--distribute mirrored is not supported on the {backend} backend: Keras "
            "has data-parallel distribution for TensorFlow "
            "(tf.distribute.MirroredStrategy) and JAX "
            "(keras.distribution.DataParallel) only; use KERAS_BACKEND=tensorflow "
            "or jax, or --distribute none"
        )


def _join_cluster() -> cluster.MultiWorker:
    """Joins the cluster of the environment (once per process), before the
    backend computes anything."""
    try:
        return cluster.join_cluster()
    except cluster.ClusterError as exc:
        raise BenchError(f"--distribute multi-worker: {exc}") from exc
