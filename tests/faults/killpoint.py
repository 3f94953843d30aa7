"""Run `funnel ARGS...` and SIGKILL it right after its N-th rename (``os.replace``, ``os.rename`` or the
publish's atomic exchange) of a path under PREFIX: a kill at an exact step of a publication, which a
kill at a random moment almost never hits.

    python -m tests.faults.killpoint N PREFIX -- ARGS...

N = 0 counts instead: the process runs to the end and prints ``renames: K`` on stderr.
"""
from __future__ import annotations

import os
import signal
import sys


def main() -> int:
    n, prefix = int(sys.argv[1]), os.path.abspath(sys.argv[2])
    args = sys.argv[sys.argv.index("--") + 1:]
    seen = [0]

    def counted(fn):
        def wrapper(src, dst, *a, **kw):
            out = fn(src, dst, *a, **kw)
            if os.path.abspath(os.fspath(dst)).startswith(prefix):
                seen[0] += 1
                if seen[0] == n:
                    os.kill(os.getpid(), signal.SIGKILL)
            return out
        return wrapper

    import funnel.core.publish as publish

    os.replace, os.rename = counted(os.replace), counted(os.rename)
    publish.exchange = counted(publish.exchange)
    from funnel.cli.main import main as funnel_main

    try:
        return funnel_main(args)
    finally:
        if n == 0:
            print(f"renames: {seen[0]}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
