"""What a training process runs on: CPU model, GPUs, TensorFlow threads, mixed precision.

Keras (and TensorFlow or JAX) are imported inside the functions, so importing this module is
cheap.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from committee.log import MEMBER, logger


def configure_tensorflow(threads: int | None = None, gpu_memory_growth: bool = True) -> None:
    """Limit TensorFlow to ``threads`` CPU threads and let GPUs grow memory on demand.

    Must run before TensorFlow executes its first op; afterwards the settings are fixed and
    this is a no-op.
    """
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # e.g. retracing notices when predicting new shapes
    try:
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, int(threads))))
        if gpu_memory_growth:
            for gpu in tf.config.list_physical_devices("GPU"):
                tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # runtime already initialised in this process
        pass


def _cpu_has_bfloat16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no cheap way to tell, so assume not
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _has_gpu() -> bool:
    """Whether Keras' backend (TensorFlow, JAX or PyTorch) sees a GPU."""
    return bool(gpu_names())


def cpu_model() -> str:
    """This machine's CPU model ("model name" of /proc/cpuinfo), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine() or "unknown"


def gpu_names() -> list[str]:
    """The names of the GPUs Keras' backend sees (e.g. "NVIDIA H200"); [] without any."""
    import keras

    backend = keras.config.backend()
    if backend == "jax":
        import jax

        return [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    import tensorflow as tf

    return [
        tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
        for gpu in tf.config.list_physical_devices("GPU")
    ]


def device_info() -> dict[str, Any]:
    """``{"cpu": model, "gpus": [names]}`` of the machine this process trains on."""
    return {"cpu": cpu_model(), "gpus": gpu_names()}


def effective_precision(requested: str) -> str:
    """The dtype policy to train with: ``requested`` unless this machine would emulate it.

    Mixed precision pays only with hardware support: any GPU for ``mixed_bfloat16`` (Ampere
    or newer runs it natively) and ``mixed_float16``; on CPUs, ``mixed_bfloat16`` needs
    AVX-512-BF16 or AMX. Without it, float32 is used and a line says so.
    """
    if requested == "float32":
        return requested
    if _has_gpu():
        return requested
    if requested == "mixed_bfloat16" and _cpu_has_bfloat16():
        return requested
    logger.info(
        f"precision {requested} has no hardware support here; training in float32", extra=MEMBER
    )
    return "float32"
