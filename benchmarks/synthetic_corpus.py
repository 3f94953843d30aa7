"""Synthetic corpus for scaling benchmarks: Zipfian vocabulary, log-normal document lengths.

Words are pronounceable pseudo-words (2-4 syllables, unique), drawn with probability proportional to
1 / rank^s (s = 1.07, close to English); body lengths are log-normal (median 160 tokens, sigma 0.6,
capped at 2,000), titles 4-12 words. Deterministic for a seed. Documents go straight into a store.

    .venv/bin/python benchmarks/synthetic_corpus.py HOME --docs 1000000
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from funnel.core.store import Document, DocumentStore  # noqa: E402

ONSETS = ["b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "cl", "st", "tr"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]


def vocabulary(n: int, seed: int = 0) -> np.ndarray:
    """`n` distinct pseudo-words, shuffled so frequency rank is unrelated to spelling."""
    syll = [o + v for o, v in itertools.product(ONSETS, VOWELS)]  # 147 syllables
    words: list[str] = []
    for k in (2, 3, 4):
        for combo in itertools.product(syll, repeat=k):
            words.append("".join(combo))
            if len(words) >= n:
                break
        if len(words) >= n:
            break
    arr = np.array(words, dtype=object)
    np.random.default_rng(seed).shuffle(arr)
    return arr


def synthetic_docs(n_docs: int, vocab_size: int = 300_000, zipf_s: float = 1.07, seed: int = 0):
    """Yield `n_docs` Documents (ids ``syn-0000000``...)."""
    rng = np.random.default_rng(seed)
    words = vocabulary(vocab_size, seed)
    cdf = np.cumsum(1.0 / np.arange(1, vocab_size + 1) ** zipf_s)
    cdf /= cdf[-1]
    for start in range(0, n_docs, 10_000):
        m = min(10_000, n_docs - start)
        lens = np.minimum(np.rint(rng.lognormal(np.log(160), 0.6, m)).astype(int) + 5, 2000)
        tlens = rng.integers(4, 13, m)
        toks = words[np.searchsorted(cdf, rng.random(int(lens.sum() + tlens.sum())))]
        pos = 0
        for i in range(m):
            title = " ".join(toks[pos:pos + tlens[i]])
            pos += tlens[i]
            text = " ".join(toks[pos:pos + lens[i]])
            pos += lens[i]
            yield Document(f"syn-{start + i:07d}", title=title, text=text)


def make_store(home: Path, n_docs: int, seed: int = 0) -> Path:
    """A store under `home` holding the synthetic corpus (kept if it already has `n_docs` documents)."""
    path = Path(home) / "store.sqlite"
    with DocumentStore(path) as store:
        if store.count() != n_docs:
            batch = []
            for doc in synthetic_docs(n_docs, seed=seed):
                batch.append(doc)
                if len(batch) == 10_000:
                    store.put_docs(batch)
                    batch = []
            if batch:
                store.put_docs(batch)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("home")
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(make_store(Path(args.home), args.docs, args.seed))


if __name__ == "__main__":
    main()
