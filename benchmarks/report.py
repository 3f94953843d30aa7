"""What every benchmark prints at the top of its report, and how the report is published.

`machine()` names the hardware the figures came from (CPU model and cores, GPU or none, torch and
Python versions), so a results file says where it was measured wherever it ran: this 2-core VM or
the lent GPU machine. `publish(text, out)` prints the report and writes it under `benchmarks/results/`.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """e.g. 'AMD EPYC 7B13, 2 cores, no GPU; torch 2.13.0+cpu (2 threads); Python 3.11.7'."""
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
        accel = f"{gpu}; torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        accel = "torch not installed"
    return f"{cpu_model()}, {os.cpu_count()} cores, {accel}; Python {platform.python_version()}"


def command() -> str:
    """The command line that produced a report, as a reader would type it."""
    return "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])


def publish(text: str, out: str | Path) -> Path:
    """Print the report and write it to `out` (folders made as needed)."""
    out = Path(out)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"written to {out}")
    return out
