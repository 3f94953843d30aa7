"""SimHash near-duplicate detection: brute-force agreement of the banded index, and behaviour on real text."""
from __future__ import annotations

import random

from funnel.crawler.dedup import NearDupIndex, hamming, simhash

TEXT = " ".join(f"the crawler fetched page {i} about topic {i % 17} and stored its outlinks" for i in range(80))


def test_simhash_similar_texts_are_close_and_different_texts_far():
    a = simhash(TEXT)
    assert a == simhash(TEXT.upper())  # case-insensitive, deterministic across processes (blake2b)
    assert hamming(a, simhash(TEXT + " one extra sentence here")) <= 3
    other = " ".join(f"gardening notes on roses number {i} and compost heaps" for i in range(80))
    assert hamming(a, simhash(other)) > 10
    assert simhash("") == 0 and 0 <= a < 2 ** 64


def test_banded_index_matches_brute_force():
    rng = random.Random(7)
    fps = [rng.getrandbits(64) for _ in range(300)]
    # plant near copies at distances 0..5
    for d in range(6):
        base = fps[d]
        flip = sum(1 << b for b in rng.sample(range(64), d))
        fps.append(base ^ flip)
    index = NearDupIndex(max_distance=3)
    for i, fp in enumerate(fps):
        found = index.find(fp)
        brute = [j for j in range(i) if hamming(fps[j], fp) <= 3]
        assert (found is None) == (not brute)
        if found is not None:
            assert hamming(fps[int(found)], fp) == min(hamming(fps[j], fp) for j in brute)
        index.add(fp, str(i))
