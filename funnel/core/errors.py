"""User-facing errors: anything a user can fix by changing input or setup.

The CLI prints these as one line (``error: ...``) and exits with status 2;
anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import errno
import re
from pathlib import Path


class FunnelError(Exception):
    """An error caused by input, configuration or environment, with a message a user can act on."""


class InputError(FunnelError):
    """Bad input data: the message names the file, line or field and what was expected."""


class MissingDependencyError(FunnelError):
    """An optional dependency is missing; the message says which pip command fixes it."""

    def __init__(self, module: str, pip_name: str | None = None, purpose: str = ""):
        pip_name = pip_name or module
        why = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"python package '{module}' is not installed{why}: run `pip install {pip_name}`")


# errno values that mean "this home cannot take the write": read-only, not permitted, full, over a quota or
# over the process's file size limit (`ulimit -f`, RLIMIT_FSIZE)
_STORAGE_ERRNOS = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                   errno.EPERM: "operation not permitted", errno.ENOSPC: "no space left on the disk",
                   errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file size limit reached"}
_SQLITE_STORAGE = ("readonly", "read-only", "disk is full", "disk i/o error", "unable to open database")
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def storage_error(exc: BaseException, store_path: Path | None = None, home: Path | None = None) -> str | None:
    """A one-line message for a write the home could not take (read-only, full, size limit), or None when
    `exc` is something else. Every writer publishes by rename after writing whole files, so a failed
    write leaves what the home served before; the message says so."""
    import sqlite3

    seen = set()
    while exc is not None and id(exc) not in seen:  # the OSError may be the cause of a library's error
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
            where = f" {exc.filename}" if exc.filename else (f" under {home}" if home else "")  # a write() names no file
            return (f"cannot write{where}: {_STORAGE_ERRNOS[exc.errno]}; nothing was published, the home "
                    f"still holds (and serves) what it held before")
        code = _RUST_OS_ERROR.search(str(exc))  # safetensors (Rust) reports the errno only in its message
        if code and int(code.group(1)) in _STORAGE_ERRNOS and not isinstance(exc, OSError):
            where = f" under {home}" if home else ""
            return (f"cannot write{where}: {_STORAGE_ERRNOS[int(code.group(1))]} ({exc}); nothing was published, "
                    f"the home still holds (and serves) what it held before")
        if isinstance(exc, sqlite3.OperationalError) and any(s in str(exc).lower() for s in _SQLITE_STORAGE):
            where = f" {store_path}" if store_path else " the document store"
            verb = "open" if "unable to open" in str(exc) else "write"
            return (f"cannot {verb}{where}: {exc} (read-only or full disk?); the transaction was rolled back, "
                    f"the store holds what it held before")
        exc = exc.__cause__ or exc.__context__
    return None
