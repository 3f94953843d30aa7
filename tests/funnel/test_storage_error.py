"""`storage_error`: which failures become one `error: cannot write ...` line (a read-only home, a full
disk, a file size limit, SQLite's read-only or full store), and which stay tracebacks (anything else)."""
from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from funnel.core.errors import storage_error


def test_disk_and_permission_errors_become_one_line():
    for code, words in ((errno.EROFS, "read-only file system"), (errno.ENOSPC, "no space left"),
                        (errno.EFBIG, "file size limit"), (errno.EACCES, "permission denied")):
        msg = storage_error(OSError(code, "x", "/h/index/seg"), Path("/h/store.sqlite"), Path("/h"))
        assert msg.startswith("cannot write /h/index/seg: " + words) and "\n" not in msg
    assert storage_error(OSError(errno.EFBIG, "x"), None, Path("/h")).startswith("cannot write under /h:")


def test_the_cause_of_a_library_error_counts():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/h/models/.tmp-coarse/model.txt")
        except OSError as exc:
            raise RuntimeError("save failed") from exc
    except RuntimeError as exc:
        assert storage_error(exc).startswith("cannot write /h/models/.tmp-coarse/model.txt: no space left")


def test_a_model_save_on_a_full_disk_becomes_one_line(tmp_path):
    """safetensors (the cross-encoder's and dual encoder's weights) raises its own error, the errno only in
    the message: the real one, from a real write under a 2 KiB file size limit."""
    import subprocess
    import sys

    code = ("import resource, signal, torch\n"
            "from safetensors.torch import save_file\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))\n"
            "from funnel.core.errors import storage_error\n"
            "try:\n"
            f"    save_file({{'w': torch.zeros(10000)}}, {str(tmp_path / 'model.safetensors')!r})\n"
            "except Exception as exc:\n"
            "    print(storage_error(exc, None, __import__('pathlib').Path('/h')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("cannot write under /h: file size limit reached"), out.stdout + out.stderr
    assert storage_error(ValueError("shape mismatch (os error 99999)")) is None


def test_sqlite_read_only_and_full_store():
    msg = storage_error(sqlite3.OperationalError("attempt to write a readonly database"), Path("/h/store.sqlite"))
    assert msg.startswith("cannot write /h/store.sqlite: attempt to write a readonly database")
    assert storage_error(sqlite3.OperationalError("database or disk is full")).startswith("cannot write the document")


def test_other_errors_keep_their_traceback():
    assert storage_error(OSError(errno.ECONNREFUSED, "refused")) is None
    assert storage_error(ValueError("bug")) is None
    assert storage_error(sqlite3.OperationalError("no such table: docs")) is None
