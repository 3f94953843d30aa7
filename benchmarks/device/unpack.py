"""Unpack what `benchmarks/device/run.sh` sent back from the GPU machine (the device tool's files_at).

- ``results.tar.gz`` -> its tables, plots and training logs into ``--results`` (default: a scratch
  folder to read first; pass ``benchmarks/results`` to publish them);
- ``cross-encoder.tar.0``, ``.1``, ... -> joined and extracted into ``--models`` as ``cross-encoder/``
  (fp16 weights; `funnel.ranking.models.cross_encoder.load_cross_encoder` loads them as float32 on the CPU).

    .venv/bin/python benchmarks/device/unpack.py /work/.device/.../files --results /tmp/gpu-results \\
        --models .funnel/models-gpu
"""
from __future__ import annotations

import argparse
import io
import shutil
import sys
import tarfile
from pathlib import Path


def _safe_extract(tar: tarfile.TarFile, dest: Path) -> list[str]:
    """Extract regular files and folders only, never outside `dest` (no links, no absolute paths)."""
    dest = dest.resolve()
    names = []
    for m in tar.getmembers():
        target = (dest / m.name).resolve()
        if not (m.isfile() or m.isdir()) or dest not in (target, *target.parents):
            raise SystemExit(f"refusing archive member {m.name!r}")
        names.append(m.name)
    tar.extractall(dest, filter="data")
    return names


def unpack(files: Path, results: Path | None, models: Path | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if results is not None and (files / "results.tar.gz").exists():
        results.mkdir(parents=True, exist_ok=True)
        with tarfile.open(files / "results.tar.gz") as tar:
            staged = results.parent / f".{results.name}-unpack"
            names = _safe_extract(tar, staged)
        for p in sorted((staged / "results").iterdir()):
            p.replace(results / p.name)
        shutil.rmtree(staged)
        out["results"] = [n for n in names if n != "results"]
    parts = sorted(files.glob("cross-encoder.tar.*"), key=lambda p: int(p.suffix[1:]))
    if models is not None and parts:
        models.mkdir(parents=True, exist_ok=True)
        data = b"".join(p.read_bytes() for p in parts)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            out["models"] = _safe_extract(tar, models)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", help="the folder the device tool put the returned files in")
    ap.add_argument("--results", default="/tmp/gpu-results", help="where the tables and logs go")
    ap.add_argument("--models", default=None, help="where cross-encoder/ goes (default: not unpacked)")
    args = ap.parse_args()
    done = unpack(Path(args.files), Path(args.results), Path(args.models) if args.models else None)
    for k, v in done.items():
        print(f"{k}: {len(v)} entries -> {args.results if k == 'results' else args.models}")
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
