"""CPU inference in int8: dynamic quantisation of a transformer's Linear layers, for serving only.

The weights of every ``torch.nn.Linear`` become int8 (one scale per output channel); activations are
quantised on the fly per batch, and the matrix products run in int8 (fbgemm on x86). Embeddings,
layer norms, softmax and the small head stay in fp32. On SciFact dev (AMD EPYC 2-core VM,
`benchmarks/results/pruning_rounds_int8.md`) the cross-encoder ran 1.37x faster and lost 0.025
nDCG@10 re-ranking BM25's top 20, so fp32 stays the default. Never used for
training (`funnel prune` and the trainers keep fp32) nor on a GPU (fp16/bf16 there).

It uses ``torch.ao.quantization.quantize_dynamic``, which torch marks as deprecated: where a torch
build lacks it or refuses the model, `quantize_int8` logs why and returns the fp32 model unchanged.
"""
from __future__ import annotations

import logging
import warnings

from funnel.core.errors import InputError

log = logging.getLogger(__name__)

CPU_DTYPES = ("fp32", "int8")


def check_cpu_dtype(name: str) -> str:

    if name not in CPU_DTYPES:
        raise InputError(f"CPU inference dtype must be one of {', '.join(CPU_DTYPES)}, got {name!r}")
    return name


def quantize_int8(model):
    """An int8 dynamically quantised copy of `model` (a CPU module in eval mode), or `model` itself
    when this torch cannot quantise it."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecation notices, once per layer
            from torch.ao.quantization import quantize_dynamic

            engines = torch.backends.quantized.supported_engines
            if "fbgemm" in engines or "x86" in engines or "qnnpack" in engines:
                return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            log.warning("int8: no quantised engine in this torch build (%s): serving fp32", engines)
    except (ImportError, AttributeError, RuntimeError) as e:
        log.warning("int8 quantisation unavailable in torch %s (%s): serving fp32", torch.__version__, e)
    return model
