"""Start-up cost of the vector index (`funnel.index.vectors`): opening a 100k-vector HNSW index by
building it in memory (format 1, what every server start and every worker did before) against
memory-mapping the ANN file the writer saved (format 2).

Vectors: ``--n`` random unit vectors of ``--dim`` dimensions (seeded); the HNSW parameters are the
serving defaults (``recall.hnsw_m`` 16, efConstruction 100). Each open runs in a fresh Python process
(imports included), as a server worker starts: "open s" is the `VectorIndex(...)` call, "process s"
the whole child from launch to its first answered query. Both opens must return the same top 10.

    .venv/bin/python benchmarks/vector_open.py --n 100000 --dim 384
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import command, machine, publish  # noqa: E402
from funnel.index.vectors import AnnSpec, VectorIndexWriter  # noqa: E402

CHILD = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from funnel.index.vectors import VectorIndex
t1 = time.perf_counter()
vi = VectorIndex(sys.argv[1], backend="hnsw", hnsw_m=16, ef_construction=100, ef_search=512)
t2 = time.perf_counter()
q = np.load(sys.argv[2])
_, rows = vi.search(q, 10)
t3 = time.perf_counter()
print(json.dumps({"source": vi.ann_source, "import_s": t1 - t0, "open_s": t2 - t1, "query_s": t3 - t2,
                  "rows": rows.tolist()}))
"""


def open_in_child(index_dir: Path, queries: Path) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, str(index_dir), str(queries)], check=True,
                         capture_output=True, text=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t0
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--work", default="", help="folder for the index (default: a temporary one)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "vector_open.md"))
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = [f"d{i}" for i in range(args.n)]
    with tempfile.TemporaryDirectory(dir=args.work or None) as tmp:
        work = Path(tmp)
        queries = work / "queries.npy"
        np.save(queries, vecs[rng.choice(args.n, 5, replace=False)])
        t0 = time.perf_counter()
        manifest = VectorIndexWriter(work / "dense", ann=AnnSpec("hnsw")).replace(vecs, ids)
        write_s = time.perf_counter() - t0
        ann_mib = (work / "dense" / manifest["ann"]["file"]).stat().st_size / 2**20
        saved = open_in_child(work / "dense", queries)
        old = {k: v for k, v in manifest.items() if k != "ann"}
        (work / "dense" / "manifest.json").write_text(json.dumps(dict(old, format=1)))  # as before: no saved ANN
        built = open_in_child(work / "dense", queries)
        same = saved["rows"] == built["rows"]
    rows = [("format 1: HNSW built at open (before)", built), ("format 2: saved HNSW memory-mapped (after)", saved)]
    lines = [
        "# Vector index start-up: HNSW built at open vs saved and memory-mapped",
        "",
        f"- Machine: {machine()}; 1-minute load average at the end: {os.getloadavg()[0]:.1f} (other jobs on the VM slow every row).",
        f"- Command: `{command()}`",
        f"- Index: {args.n:,} random unit vectors x {args.dim} dims, HNSW M=16, efConstruction 100 "
        f"(`recall.ann=hnsw` defaults); the writer built and saved it in {write_s:.1f} s "
        f"({ann_mib:.0f} MiB file) once, at publish time.",
        "- Each open in a fresh Python process; top 10 of 5 queries "
        f"{'identical' if same else 'DIFFERENT (a multi-threaded HNSW build is not deterministic)'} between the two.",
        "",
        "| open | ANN source | import s | open s | first query s | process s (launch to first answer) |",
        "|---|---|---:|---:|---:|---:|",
        *[f"| {name} | {r['source']} | {r['import_s']:.2f} | {r['open_s']:.2f} | {r['query_s']:.3f} | {r['process_s']:.2f} |"
          for name, r in rows],
        "",
    ]
    publish("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
