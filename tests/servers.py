"""For tests that run a server (`funnel serve`, the Streamlit dashboard) in a child process on loopback:
a free port to give it (stop it with `funnel.core.procs.stop_process`)."""
from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
