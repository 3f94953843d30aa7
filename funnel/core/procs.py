"""Child processes Funnel starts (the Streamlit dashboard, `funnel serve` in tests and benchmarks)."""
from __future__ import annotations

import subprocess


def stop_process(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM `proc`, then SIGKILL it if it has not exited after `grace_s`.

    A loaded machine can keep Streamlit's shutdown busy for longer than that; a child left running
    would keep the parent's output pipe open, so whoever waits for it would hang.
    """
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
