"""Everything Funnel needs a GPU for, in one timed call on the lent GPU machine.

A session is lent a GPU for about 15 minutes of device time (start-up included), one command at a
time, up to 10 minutes each. This script makes that one command count: it builds SciFact from
scratch on the GPU and writes every GPU figure the open issues ask for, most important first, each
step timed and logged, a failing step recorded and skipped past rather than ending the run, and no
step started that would overrun the budget (``--budget-s``). Run it through
``benchmarks/device/run.sh`` (which installs the carried wheels and points Funnel at the carried
MiniLM copy); ``benchmarks/device/prepare.py`` fills ``.device/`` here first.

Steps (``--steps`` picks a subset; default all, in this order):
  index      ingest SciFact, build the inverted index
  pagerank   benchmarks/pagerank.py without Spark: networkx vs scipy vs torch on CUDA     -> pagerank_gpu.md
  dense      zero-shot MiniLM vectors; dual encoder fine-tuned with shared towers, re-embedded
  cross      cross-encoder, listwise, best dev epoch kept (bf16 autocast)
  coarse     LightGBM LambdaMART on hybrid candidates: tuned dense (leaky: shared towers cannot be
             cross-fitted over one vector index) and zero-shot dense features
  funnel     benchmarks/funnel_stages.py --profile gpu (CE on the top 100)                         -> funnel_gpu.md
  prune      funnel prune on CUDA: 50% heads + 40% FFN, and 40% heads + 25% FFN, distilled
  pruning    benchmarks/pruning.py: pruned vs unpruned, CPU (2 threads) and GPU side by side -> pruning_gpu.md
  recall     query-tower and unsupervised (ICT sentences, both towers) encoders; recall.py -> recall_gpu.md
  variants   the funnel with zero-shot dense features, and with the pruned cross-encoder   -> funnel_gpu_*.md
  pack       results + logs -> OUT/results.tar.gz; the cross-encoder in fp16 -> OUT/cross-encoder.tar.*

``--smoke`` runs the same steps on a tiny corpus with tiny random models on the CPU (the test
`tests/benchmarks/test_gpu_session.py` does, with the packages the GPU machine lacks made unimportable).

    bash benchmarks/device/run.sh                       # on the GPU machine, OUT set by the device tool
    python benchmarks/gpu_session.py --smoke --out /tmp/gs   # here
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

STEPS = ("index", "pagerank", "dense", "cross", "coarse", "funnel", "prune", "pruning", "recall", "variants", "pack")
# Seconds each step is expected to take on the H200 (a step is skipped when less than this is left)
ESTIMATE_S = {"index": 15, "pagerank": 60, "dense": 60, "cross": 90, "coarse": 60, "funnel": 45, "prune": 90,
              "pruning": 90, "recall": 90, "variants": 60, "pack": 10}
RESERVE_S = 20  # kept for `pack` whatever happens


class Session:
    def __init__(self, args):
        self.args = args
        self.t0 = time.time()
        self.out = Path(args.out)
        self.work = Path(args.work)
        # what gets packed into OUT/results.tar.gz (the device tool returns at most 8 files)
        self.results = self.work / "results"
        self.data = Path(args.data)
        self.smoke = args.smoke
        self.steps_log = self.results / "gpu_session_steps.jsonl"
        if self.results.exists():
            shutil.rmtree(self.results)
        for d in (self.out, self.results):
            d.mkdir(parents=True, exist_ok=True)
        self.home = self.work / "home"  # the funnel: tuned dual encoder, coarse, cross-encoder
        self.home_zs = self.work / "home-zeroshot"  # zero-shot MiniLM vector index
        self.backbone = "tiny" if self.smoke else "minilm"

    def left(self) -> float:
        return self.args.budget_s - (time.time() - self.t0)

    def config(self, home: Path, *overrides: str):
        from funnel.core.config import load_config

        return load_config(None, self.settings(home) + list(overrides))

    def settings(self, home: Path) -> list[str]:
        """Config overrides every step of `home` shares: the backbone, and for the zero-shot home its encoder."""
        base = [f"paths.home={json.dumps(str(home))}", f"train_dense.backbone={json.dumps(self.backbone)}",
                f"fine.backbone={json.dumps(self.backbone)}"]
        if home == self.home_zs:
            base.append(f"dense.model={json.dumps(self.backbone)}")
        return base

    def record(self, **rec) -> None:
        rec["elapsed_s"] = round(time.time() - self.t0, 1)
        print("[gpu_session]", json.dumps(rec), flush=True)
        with open(self.steps_log, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    def run(self, name: str, fn) -> None:
        need = 2 if self.smoke else ESTIMATE_S[name]
        if name != "pack" and self.left() - RESERVE_S < need:
            self.record(step=name, status="skipped", reason=f"{self.left():.0f} s left, needs ~{need} s")
            return
        t = time.time()
        try:
            fn(self)
            self.record(step=name, status="ok", seconds=round(time.time() - t, 1))
        except Exception as exc:  # one broken step must not cost the rest of the lease
            self.record(step=name, status="failed", seconds=round(time.time() - t, 1), error=repr(exc)[-500:],
                        traceback=traceback.format_exc()[-3000:])

    def bench(self, script: str, *argv: str) -> None:
        """Run a benchmark script as its own process (its output streams into this run's log), within
        what is left of the budget."""
        cmd = [sys.executable, str(ROOT / "benchmarks" / script), *argv]
        print("[gpu_session] $", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, timeout=max(10.0, self.left() - RESERVE_S), cwd=ROOT)


def clone_home(src: Path, dst: Path) -> None:
    """A second home over the same store and inverted index, with its own vector index and models."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    (dst / "store.sqlite").symlink_to((src / "store.sqlite").resolve())
    shutil.copytree(src / "index", dst / "index", ignore=shutil.ignore_patterns("dense"))


# ---- steps -------------------------------------------------------------------------------------

def step_index(s: Session) -> None:
    from funnel.crawler.beir import ingest_beir
    from funnel.core.store import DocumentStore
    from funnel.index.analyze import Analyzer
    from funnel.index.builder import build_index

    if s.home.exists():
        shutil.rmtree(s.home)
    config = s.config(s.home)
    s.home.mkdir(parents=True)
    with DocumentStore(config.paths.store) as store:
        counts = ingest_beir(s.data, store)
        build_index(store, config.paths.index, Analyzer(config.analyzer), progress=False)
    clone_home(s.home, s.home_zs)
    s.record(step="index", docs=counts["docs"])


def step_pagerank(s: Session) -> None:
    argv = ["--spark-master", "none", "--out", str(s.results / "pagerank_gpu.md")]
    links = ROOT / ".device" / "javadoc_links.parquet"
    if s.smoke or not links.exists():
        argv += ["--graphs", "power-law"]
    else:
        argv += ["--javadoc-links", str(links)]
    if s.smoke:
        argv += ["--nodes", "20000", "--edges", "200000"]
    s.bench("pagerank.py", *argv)


def _train_dense(s: Session, config, out: Path, log_name: str) -> dict:
    from funnel.ranking.training.train_dense import train_dual_encoder

    summary = train_dual_encoder(config, s.data, out, log_file=s.results / log_name, device="auto", progress=False)
    s.record(step=log_name, best_epoch=summary["best_epoch"], dev=summary["dev"], seconds=summary["seconds"])
    return summary


def step_dense(s: Session) -> None:
    from funnel.ranking.models.dual_encoder import embed_store

    embed_store(s.config(s.home_zs), s.backbone, rebuild=True, progress=False)
    epochs = "1" if s.smoke else "10"
    cfg = s.config(s.home, 'train_dense.towers="shared"', f"train_dense.epochs={epochs}",
                   "train_dense.learning_rate=3e-5")  # 7 hard negatives, batch 32: the defaults
    _train_dense(s, cfg, s.home / "models" / "dual-encoder", "train_dense_shared_gpu.jsonl")
    embed_store(s.config(s.home), str(s.home / "models" / "dual-encoder"), rebuild=True, progress=False)


def step_cross(s: Session) -> None:
    from funnel.ranking.training.train_cross import train_cross_encoder

    over = (["fine.epochs=1", "fine.max_length=64", "fine.eval_depth=8"] if s.smoke else
            ["fine.epochs=10", "fine.max_length=256", "fine.group_size=8", "fine.batch_queries=16",
             "fine.negatives_depth=50", "fine.eval_depth=30", "fine.learning_rate=3e-5"])
    cfg = s.config(s.home, *over)
    out = s.home / "models" / "cross-encoder"
    train_cross_encoder(cfg, s.data, out, log_file=s.results / "train_cross_encoder_gpu.jsonl", device="auto",
                        progress=False)
    (s.home_zs / "models").mkdir(parents=True, exist_ok=True)
    link = s.home_zs / "models" / "cross-encoder"
    if not link.exists():
        link.symlink_to(out.resolve())


def step_coarse(s: Session) -> None:
    from funnel.ranking.training.train_coarse import train_coarse

    for home, log_name in ((s.home, "train_coarse_gpu.jsonl"), (s.home_zs, "train_coarse_zeroshot_dense.jsonl")):
        if home is s.home_zs and s.left() - RESERVE_S < ESTIMATE_S["coarse"] / 2:
            s.record(step="coarse (zero-shot dense)", status="skipped", reason="time")
            continue
        cfg = s.config(home)
        train_coarse(cfg, s.data, home / "models" / "coarse", log_file=s.results / log_name, progress=False)


def _funnel(s: Session, home: Path, out_name: str, *sets: str) -> None:
    argv = ["--home", str(home), "--data", str(s.data), "--split", "dev", "--profile", "gpu",
            "--out", str(s.results / out_name)]
    for x in (*s.settings(home)[1:], *sets):
        argv += ["--set", x]
    if s.smoke:
        argv += ["--set", "pipeline.gpu_fine_max_length=64"]
    s.bench("funnel_stages.py", *argv)


def step_funnel(s: Session) -> None:
    _funnel(s, s.home, "funnel_gpu.md")


def step_prune(s: Session) -> None:
    from funnel.ranking.training.prune import prune_model

    ce = s.home / "models" / "cross-encoder"
    plans = (("cross-encoder-h50-f40", "0.5", "0.4"), ("cross-encoder-h40-f25", "0.4", "0.25"))
    for name, target, ffn in plans:
        if s.left() - RESERVE_S < ESTIMATE_S["prune"] / 2:
            s.record(step=f"prune {name}", status="skipped", reason="time")
            continue
        over = [f"prune.target={target}", f"prune.ffn_target={ffn}", "prune.steps=3",
                "prune.importance_queries=0", "prune.eval_queries=0", "prune.recover_batch_queries=8",
                f"prune.recover_steps={'4' if s.smoke else '400'}", "prune.depth=20"]
        out = prune_model(s.config(s.home, *over), ce, s.data, s.home / "models" / name, device="auto",
                          progress=False)
        meta = json.loads((out / "funnel_meta.json").read_text(encoding="utf-8"))["pruning"]
        s.record(step=f"prune {name}", heads=[meta["heads_before"], meta["heads_after"]],
                 ndcg_at_10=meta["ndcg_at_10"], recovery_s=meta["recovery"].get("seconds"))


def step_pruning(s: Session) -> None:
    models = s.home / "models"
    pruned = [str(p) for p in sorted(models.glob("cross-encoder-h*")) if (p / "config.json").exists()]
    s.bench("pruning.py", "--home", str(s.home), "--data", str(s.data), "--teacher", str(models / "cross-encoder"),
            "--pruned", *pruned, "--queries", "0", "--curve", "0.25,0.5,0.75", "--cpu-threads", "2",
            "--cpu-queries", "4" if s.smoke else "20", "--out", str(s.results / "pruning_gpu.md"))


def step_recall(s: Session) -> None:
    from funnel.ranking.models.dual_encoder import embed_store

    epochs = "1" if s.smoke else "5"
    q = s.work / "dual-query"
    _train_dense(s, s.config(s.home_zs, 'train_dense.towers="query"', f"train_dense.epochs={epochs}"), q,
                 "train_dense_query_gpu.jsonl")
    # unsupervised adaptation, both towers (on a CPU only the query tower is affordable, and it gains nothing)
    home_u = s.work / "home-unsup"
    clone_home(s.home, home_u)
    u = home_u / "models" / "dual-encoder"
    _train_dense(s, s.config(home_u, "train_dense.unsupervised=true", 'train_dense.unsupervised_mode="sentence"',
                             'train_dense.towers="shared"', "train_dense.learning_rate=2e-5",
                             f"train_dense.unsupervised_pairs={'64' if s.smoke else '4000'}",
                             "train_dense.hard_negatives=1", f"train_dense.epochs={'1' if s.smoke else '2'}"), u,
                 "train_dense_unsup_gpu.jsonl")
    embed_store(s.config(home_u), str(u), rebuild=True, progress=False)
    s.bench("recall.py", "--home", str(s.home), "--data", str(s.data),
            "--model", f"zero-shot MiniLM={s.backbone}@{s.home_zs}",
            "--model", f"query tower tuned={q}@{s.home_zs}",
            "--model", f"unsupervised ICT sentences={u}@{home_u}",
            "--model", f"shared towers tuned={s.home / 'models' / 'dual-encoder'}@{s.home}",
            "--out", str(s.results / "recall_gpu.md"))


def step_variants(s: Session) -> None:
    if (s.home_zs / "models" / "coarse" / "model.txt").exists():
        _funnel(s, s.home_zs, "funnel_gpu_zeroshot_dense.md")
    pruned = s.home / "models" / "cross-encoder-h50-f40"
    if (pruned / "config.json").exists() and s.left() - RESERVE_S > ESTIMATE_S["funnel"]:
        _funnel(s, s.home, "funnel_gpu_pruned.md", f"fine.model={json.dumps(str(pruned))}")


def step_pack(s: Session) -> None:
    """results.tar.gz (tables, plots, logs), and the cross-encoder as fp16 in parts under 16 MiB."""
    from safetensors.torch import load_file, save_file

    with tarfile.open(s.out / "results.tar.gz", "w:gz") as tar:
        tar.add(s.results, arcname="results")
    ce = s.home / "models" / "cross-encoder"
    if s.args.no_models or not (ce / "model.safetensors").exists():
        return
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in sorted(ce.iterdir()):
            if f.name == "model.safetensors":  # half the bytes; loaded back as float32
                half = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(f)).items()}
                tmp = s.work / "model.fp16.safetensors"
                save_file({k: v.contiguous() for k, v in half.items()}, str(tmp), metadata={"format": "pt"})
                tar.add(tmp, arcname="cross-encoder/model.safetensors")
            elif f.is_file():
                tar.add(f, arcname=f"cross-encoder/{f.name}")
    data, part = buf.getvalue(), 15 * 2**20
    for i in range(0, len(data), part):
        (s.out / f"cross-encoder.tar.{i // part}").write_bytes(data[i:i + part])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="BEIR folder with train and dev judgements (default .device/scifact; with "
                                   "--smoke, the tests' tiny corpus)")
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu-session"), help="where results go ($OUT)")
    ap.add_argument("--work", default="/tmp/gpu-session-work", help="scratch: homes and models")
    ap.add_argument("--budget-s", type=float, default=520,
                    help="wall-clock budget of the whole run (the device tool allows 600 s a call)")
    ap.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of: " + ", ".join(STEPS))
    ap.add_argument("--smoke", action="store_true", help="tiny corpus and models on whatever device there is")
    ap.add_argument("--no-models", action="store_true", help="pack only the results, no model weights")
    args = ap.parse_args()
    args.data = args.data or str(ROOT / ("tests/data/tiny" if args.smoke else ".device/scifact"))
    wanted = [x.strip() for x in args.steps.split(",") if x.strip()]
    unknown = sorted(set(wanted) - set(STEPS))
    if unknown:
        ap.error(f"unknown step(s) {', '.join(unknown)}; known: {', '.join(STEPS)}")
    if not (Path(args.data) / "qrels" / "dev.tsv").exists():
        ap.error(f"{args.data}: no qrels/dev.tsv (run benchmarks/device/prepare.py, or pass --data)")

    import torch

    s = Session(args)
    torch.backends.cuda.matmul.allow_tf32 = True  # fp32 training steps (pruning recovery) on tensor cores
    torch.backends.cudnn.allow_tf32 = True
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    s.record(step="start", gpu=gpu, torch=torch.__version__, python=sys.version.split()[0], smoke=args.smoke,
             budget_s=args.budget_s, steps=wanted)
    if gpu is None and not args.smoke:
        s.record(step="start", status="warning", reason="no CUDA device: every step runs on the CPU")
    for name in STEPS:
        if name in wanted:
            s.run(name, globals()[f"step_{name}"])
    failed = [json.loads(x) for x in s.steps_log.read_text().splitlines()]
    bad = [r["step"] for r in failed if r.get("status") == "failed"]
    s.record(step="end", failed=bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
