"""``env.json`` of the GPU run: the machine, the GPU stack and the versions.

GPU name, driver, CUDA and cuDNN as ``nvidia-smi``, PyTorch and JAX report
them; the CPU model; Python and package versions; the commit ``make
gpu-carry`` recorded. Each probe that fails is recorded as its error, never
raised: this file must be written on any machine, the rehearsal's CPU too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from benchmarks.gpu.common import carried_commit

PACKAGES = ("keras", "tensorly", "jax", "jaxlib", "torch", "numpy", "optree")


def _error(exc: BaseException) -> str:
    return f"unavailable ({type(exc).__name__}: {exc})"


def nvidia_smi() -> dict | str:
    """Name, driver and memory of each GPU, as ``nvidia-smi`` reports them."""
    fields = ("name", "driver_version", "memory.total")
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return _error(exc)
    return {
        "gpus": [
            dict(zip(fields, (v.strip() for v in line.split(",")), strict=True))
            for line in out.strip().splitlines()
        ]
    }


def torch_info() -> dict | str:
    try:
        import torch

        info = {
            "cuda_available": torch.cuda.is_available(),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
        if info["cuda_available"]:
            info["device"] = torch.cuda.get_device_name(0)
        return info
    except Exception as exc:  # a probe must never stop the run
        return _error(exc)


def jax_info() -> dict | str:
    try:
        import jax

        devices = jax.devices()
        return {
            "backend": jax.default_backend(),
            "devices": [f"{d.platform}:{d.device_kind}" for d in devices],
        }
    except Exception as exc:  # a probe must never stop the run
        return _error(exc)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment(mode: str) -> dict:
    return {
        "mode": mode,
        "git_commit": carried_commit(),
        "nvidia_smi": nvidia_smi(),
        "torch": torch_info(),
        "jax": jax_info(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in PACKAGES},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--mode", default="gpu", choices=("gpu", "rehearse"))
    args = parser.parse_args(argv)
    Path(args.out).write_text(json.dumps(environment(args.mode), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
