"""Device choice in one place: `resolve_device("auto")` -> (device, dtype), CPU fallback logged."""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def resolve_device(device: str = "auto", dtype: str = "auto"):
    """Pick a torch device and inference dtype.

    ``device``: "auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:N".
    ``dtype``: "auto" (bf16 on a GPU that supports it, else fp16 on GPU, fp32 on CPU),
    "fp32", "fp16", "bf16".
    """
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        log.warning("device %r asked for but CUDA is not available: falling back to CPU", device)
        device = "cpu"
    dev = torch.device(device)
    names = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if dtype == "auto":
        if dev.type == "cuda":
            dt = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dt = torch.float32
    elif dtype in names:
        dt = names[dtype]
    else:
        raise ValueError(f"dtype must be auto, fp32, fp16 or bf16, got {dtype!r}")
    if dev.type == "cpu" and dt != torch.float32:
        log.warning("%s on CPU is slow or unsupported for many ops: using fp32", dtype)
        dt = torch.float32
    return dev, dt
