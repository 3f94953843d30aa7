"""Publishing a folder by rename: a model (or any artifact folder) is written whole under a temporary
name beside its final place, then swapped in, so a reader that opens the final path sees the old
complete folder or the new complete one, never a half-written one, whenever the writer is killed.

The swap is one `renameat2(RENAME_EXCHANGE)` on Linux (the final path never disappears, even for an
instant); elsewhere, or on a filesystem without it, two renames with the old folder parked at
``.old-NAME`` in between. A writer killed between those two renames leaves no folder at the final
path; `restore_interrupted` (called by every publish, and by `funnel build` and `funnel train` before
they start) puts the parked old folder back.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _load_renameat2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):  # not glibc >= 2.28 / not Linux
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _load_renameat2()


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux `RENAME_EXCHANGE`); False where that is not available."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this kernel or filesystem cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


def _parked(final: Path) -> Path:
    return final.with_name(f".old-{final.name}")


def restore_interrupted(final: Path) -> bool:
    """Put back a folder parked aside by a publish killed between its two renames; True if one was."""
    final, old = Path(final), _parked(Path(final))
    if not final.exists() and old.is_dir():
        os.replace(old, final)
        return True
    return False


def fresh_tmp(final: Path) -> Path:
    """An empty ``.tmp-NAME`` folder beside `final` to write the new version into (a stale one is removed)."""
    final = Path(final)
    tmp = final.with_name(f".tmp-{final.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def publish_folder(tmp: Path, final: Path) -> Path:
    """Swap the complete folder `tmp` into `final` (the old one, if any, is removed afterwards)."""
    tmp, final = Path(tmp), Path(final)
    restore_interrupted(final)
    old = _parked(final)
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        if exchange(tmp, final):  # tmp now holds the old folder
            shutil.rmtree(tmp)
            return final
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)
    return final
