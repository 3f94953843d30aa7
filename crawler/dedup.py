"""Duplicate detection for crawled pages: exact (content hash) and near-duplicate (64-bit SimHash).

SimHash (Charikar 2002; Manku et al. 2007 for web crawling): each distinct word votes on 64 bits
with its hash, weighted by its count; the fingerprint keeps the sign of each bit's total. Pages
whose fingerprints differ in at most ``max_distance`` bits are near-duplicates. Lookup splits the
64 bits into ``max_distance + 1`` bands: two fingerprints within the distance agree exactly on at
least one band (pigeonhole), so each band is a dict lookup, not a scan.
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter

import numpy as np

_WORD = re.compile(r"\w+")
_BITS = np.arange(64, dtype=np.uint64)
_WORD_HASH: dict[str, int] = {}  # stable across processes (blake2b, not hash()), memoised


def _word_hash(word: str) -> int:
    h = _WORD_HASH.get(word)
    if h is None:
        if len(_WORD_HASH) > 2_000_000:
            _WORD_HASH.clear()
        h = _WORD_HASH[word] = int.from_bytes(hashlib.blake2b(word.encode("utf-8", "surrogatepass"),
                                                              digest_size=8).digest(), "little")
    return h


def simhash(text: str) -> int:
    """64-bit SimHash of `text`'s lower-cased words, weighted by frequency (0 for a text with no words)."""
    counts = Counter(_WORD.findall(text.lower()))
    if not counts:
        return 0
    hashes = np.fromiter((_word_hash(w) for w in counts), dtype=np.uint64, count=len(counts))  # (n_words,)
    weights = np.fromiter(counts.values(), dtype=np.int64, count=len(counts))  # (n_words,)
    bits = ((hashes[:, None] >> _BITS) & np.uint64(1)).astype(np.int64)  # (n_words, 64)
    votes = weights @ (2 * bits - 1)  # (64,)
    return int(np.sum((votes > 0).astype(np.uint64) << _BITS))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class NearDupIndex:
    """Fingerprints seen so far; `find` returns the first stored doc within `max_distance` bits."""

    def __init__(self, max_distance: int = 3):
        self.max_distance = max_distance
        self.n_bands = max_distance + 1
        self._width = 64 // self.n_bands
        self._bands: list[dict[int, list[tuple[int, str]]]] = [{} for _ in range(self.n_bands)]

    def _keys(self, fp: int) -> list[int]:
        mask = (1 << self._width) - 1
        keys = [(fp >> (i * self._width)) & mask for i in range(self.n_bands - 1)]
        keys.append(fp >> ((self.n_bands - 1) * self._width))  # the last band takes the leftover bits
        return keys

    def find(self, fp: int) -> str | None:
        best: tuple[int, str] | None = None
        for band, key in zip(self._bands, self._keys(fp)):
            for other, doc_id in band.get(key, ()):
                d = hamming(fp, other)
                if d <= self.max_distance and (best is None or d < best[0]):
                    best = (d, doc_id)
        return None if best is None else best[1]

    def add(self, fp: int, doc_id: str) -> None:
        for band, key in zip(self._bands, self._keys(fp)):
            band.setdefault(key, []).append((fp, doc_id))
