"""Index writers on a full disk: every write the disk refuses raises OSError with its errno, and nothing
is published. The child process runs with RLIMIT_FSIZE (writes past the limit fail with EFBIG, as on a
full disk with ENOSPC). Before `save_npy`, `np.save` published a vector part cut at the limit with no
error (an array smaller than C stdio's buffer loses its failed flush silently)."""
from __future__ import annotations

import resource
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.faults.kills import ROOT

LIMIT = 2048


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def _run_limited(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, preexec_fn=_limit_file_size)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("n", [30, 5000])  # 3.8 KB: inside stdio's buffer; 640 KB: past it
def test_vector_part_on_a_full_disk_raises_efbig_and_publishes_nothing(tmp_path, n):
    out = _run_limited(f"""
        import errno, numpy as np
        from funnel.index.vectors import VectorIndexWriter, read_manifest
        v = np.random.default_rng(0).standard_normal(({n}, 32)).astype(np.float32)
        try:
            VectorIndexWriter({str(tmp_path / "dense")!r}).replace(v, [str(i) for i in range({n})])
            print("published")
        except OSError as exc:
            print(errno.errorcode.get(exc.errno), read_manifest({str(tmp_path / "dense")!r}))
    """)
    assert out == "EFBIG None"


def test_segment_and_npy_on_a_full_disk_raise_efbig(tmp_path):
    out = _run_limited(f"""
        import errno, numpy as np
        from funnel.index.segments import save_npy
        for n in (600, 100_000):
            try:
                save_npy({str(tmp_path)!r} + f"/a{{n}}.npy", np.arange(n, dtype=np.int32))
                print("written")
            except OSError as exc:
                print(errno.errorcode.get(exc.errno))
    """)
    assert out.split() == ["EFBIG", "EFBIG"]


def test_save_npy_round_trips(tmp_path):
    import numpy as np

    from funnel.index.segments import save_npy

    for arr in (np.arange(10, dtype=np.int64), np.zeros((0, 4), np.float32),
                np.random.default_rng(1).standard_normal((7, 3)).astype(np.float32)):
        save_npy(tmp_path / "a.npy", arr)
        back = np.load(tmp_path / "a.npy")
        assert back.dtype == arr.dtype and back.shape == arr.shape and np.array_equal(back, arr)
