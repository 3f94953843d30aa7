"""For tests that run a server (`funnel serve`, the Streamlit dashboard) in a child process on loopback:
a free port to give it, and `funnel_serve`, which starts `funnel serve` as a user does and stops it
(`funnel.core.procs.stop_process`)."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from funnel.core.procs import stop_process


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    url: str  # http://127.0.0.1:PORT
    proc: subprocess.Popen
    log: Path  # its stdout and stderr


@contextlib.contextmanager
def funnel_serve(home: Path, serve_args: tuple[str, ...] | list[str] = (),
                 global_args: tuple[str, ...] | list[str] = (), wait_s: float = 90):
    """``funnel -q --home HOME GLOBAL_ARGS serve --port PORT SERVE_ARGS`` in its own process, once its /health
    answers 200 -> `Served`; stopped on exit. Its output goes to a file (a pipe nobody reads would block it)."""
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="funnel-serve-")) / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "funnel.cli.main", "-q", "--home", str(home), *global_args,
                                 "serve", "--port", str(port), *serve_args], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"funnel serve exited early:\n{log.read_text(errors='replace')}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"funnel serve did not answer /health within {wait_s:.0f} s")
            time.sleep(0.1)
        yield Served(url, proc, log)
    finally:
        stop_process(proc)
