"""A synthetic BEIR folder with the shape that broke `funnel build` on a new user's corpus (issue 19):
thousands of short keyword training queries, about a hundred thousand graded (0/1/2) judgement rows,
and queries BM25 finds nothing for. Small enough to build with the tiny backbone in a test.

Documents belong to topics; each topic has its own words. A query is two or three words of one topic;
its judgements are documents of that topic, graded 2 when they hold every query word, 1 when they hold
some, 0 otherwise. A fraction of the queries use words no document holds (no BM25 hit at all).

    python tests/data/make_hard_corpus.py OUT_DIR [--train 2590 --docs 3600 --rows 110000]
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def _word(rng: random.Random, n: int = 6) -> str:
    return "".join(rng.choice("bcdfghjklmnpqrstvwz") + rng.choice("aeiou") for _ in range(n // 2))


def make_hard_corpus(out: str | Path, *, n_docs: int = 600, n_train: int = 2000, n_dev: int = 100,
                     rows: int = 100_000, topics: int = 10, no_hit: float = 0.05, seed: int = 0) -> dict[str, int]:
    """Write ``corpus.jsonl``, ``queries.jsonl``, ``qrels/{train,dev}.tsv`` under `out`; returns counts."""
    rng = random.Random(seed)
    out = Path(out)
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    vocab = [[_word(rng) for _ in range(30)] for _ in range(topics)]
    common = [_word(rng, 4) for _ in range(200)]
    docs = []  # (id, topic, set of words)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as f:
        for i in range(n_docs):
            t = i % topics
            words = rng.sample(vocab[t], 8) + rng.sample(common, 30)
            rng.shuffle(words)
            docs.append((f"d{i}", t, set(words)))
            f.write(json.dumps({"_id": f"d{i}", "title": " ".join(words[:4]), "text": " ".join(words[4:])}) + "\n")
    by_topic: dict[int, list] = {}
    for d in docs:
        by_topic.setdefault(d[1], []).append(d)
    per_query = max(1, rows // (n_train + n_dev))
    counts = {"docs": n_docs, "train": n_train, "dev": n_dev, "rows": 0, "no_hit": 0}
    with open(out / "queries.jsonl", "w", encoding="utf-8") as fq:
        for split, n in (("train", n_train), ("dev", n_dev)):
            with open(out / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as fr:
                fr.write("query-id\tcorpus-id\tscore\n")
                for j in range(n):
                    qid, t = f"{split}{j}", rng.randrange(topics)
                    if rng.random() < no_hit:  # words of no document: BM25 returns nothing
                        words = [_word(rng, 8) + "x" for _ in range(2)]
                        counts["no_hit"] += 1
                    else:
                        words = rng.sample(vocab[t], rng.choice((2, 3)))
                    fq.write(json.dumps({"_id": qid, "text": " ".join(words)}) + "\n")
                    pool = by_topic[t]
                    for did, _, held in rng.sample(pool, min(per_query, len(pool))):
                        hits = sum(w in held for w in words)
                        grade = 2 if hits == len(words) else 1 if hits else 0
                        fr.write(f"{qid}\t{did}\t{grade}\n")
                        counts["rows"] += 1
    return counts


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--docs", type=int, default=600)
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--dev", type=int, default=100)
    p.add_argument("--rows", type=int, default=100_000)
    a = p.parse_args()
    print(make_hard_corpus(a.out, n_docs=a.docs, n_train=a.train, n_dev=a.dev, rows=a.rows))
