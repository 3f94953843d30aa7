"""Analysis: text -> terms, the same for documents and queries. Feeds the index builders and every query.

English: Unicode normalisation, lowercase, stop words, Snowball stemming (PyStemmer).
Chinese: each run of CJK characters is segmented by jieba (precise mode), then Chinese
stop words are dropped, so 「美食的攻略」 becomes 美食 / 攻略. Mixed text is split into
Latin-word runs and CJK runs first, so each goes to the right path.

An index records ``Analyzer.describe()`` (name and settings) and refuses to be queried
with a different analyzer.
"""
from __future__ import annotations

import os
import re
import tempfile
import threading
import unicodedata
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import Stemmer

from funnel.core.config import AnalyzerConfig
from funnel.core.errors import FunnelError

_HERE = Path(__file__).parent
# CJK Unified Ideographs (+ Extension A, compatibility ideographs): the runs jieba segments.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN_RE = re.compile(rf"[{_CJK}]+|[^\W{_CJK}]+")
_HAS_CJK = re.compile(rf"[{_CJK}]")


@lru_cache(maxsize=None)
def load_stopwords(lang: str) -> frozenset[str]:
    return frozenset(w.strip() for w in (_HERE / f"stopwords_{lang}.txt").read_text("utf-8").split() if w.strip())


@lru_cache(maxsize=1)
def _jieba():
    import jieba

    # jieba writes a ~9 MB dictionary cache on first use: keep it out of the shared /tmp.
    cache_dir = Path(os.environ.get("FUNNEL_CACHE", Path(tempfile.gettempdir()) / f"funnel-{os.getuid()}"))
    cache_dir.mkdir(parents=True, exist_ok=True)
    jieba.dt.tmp_dir = str(cache_dir)
    jieba.setLogLevel(60)
    jieba.initialize()
    return jieba


class _TermCache(dict):
    """word -> term ("" when the word is dropped), computed on first sight of the word."""

    def __init__(self, analyzer: "Analyzer"):
        super().__init__()
        self._stop = analyzer._stop_en
        self._stemmer = analyzer._stemmer
        self._lock = analyzer._stem_lock

    def __missing__(self, word: str) -> str:
        if word in self._stop or not self._stemmer:
            term = "" if word in self._stop else word
        else:
            with self._lock:  # a PyStemmer object must not stem in two threads at once
                term = self._stemmer.stemWord(word)
        self[word] = term
        return term


class Analyzer:
    """Callable text -> list of terms. Cheap to build; stemmer and jieba load once per process."""

    name = "funnel-standard"
    version = 1

    def __init__(self, config: AnalyzerConfig | None = None):
        self.config = config or AnalyzerConfig()
        c = self.config
        if c.stemmer:
            try:
                self._stemmer = Stemmer.Stemmer(c.stemmer)
            except KeyError:
                raise FunnelError(f"analyzer.stemmer: unknown language {c.stemmer!r}; "
                                  f"choose one of {', '.join(Stemmer.algorithms())} or \"\"") from None
        else:
            self._stemmer = None
        # The server shares one analyzer between request threads: dict lookups are atomic, stemming a
        # new word is not (PyStemmer keeps state per object), so it takes this lock (misses are rare).
        self._stem_lock = threading.Lock()
        self._stop_en = load_stopwords("en") if c.stopwords else frozenset()
        self._stop_zh = load_stopwords("zh") if c.stopwords else frozenset()
        # word -> term ("" for a dropped word): a corpus has far fewer distinct words than tokens,
        # so each word is filtered and stemmed once (the trick that makes bm25s' tokenizer fast).
        self._terms = _TermCache(self)
        # runs of at least min_token_len word characters: shorter words never become terms
        self._word_re = re.compile(rf"\w{{{max(c.min_token_len, 1)},}}")

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, **asdict(self.config)}

    def __call__(self, text: str) -> list[str]:
        c = self.config
        if c.unicode_form and not text.isascii():  # normalising ASCII changes nothing
            text = unicodedata.normalize(c.unicode_form, text)
        if c.lowercase:
            text = text.lower()
        if c.chinese and _HAS_CJK.search(text):
            return self._mixed(text)
        words = self._word_re.findall(text)  # no CJK here, so the words are the runs of \w
        terms = self._terms
        if len(terms) > 1_000_000:  # bounded, so a long-lived server stays small
            terms.clear()
        return list(filter(None, map(terms.__getitem__, words)))

    def _mixed(self, text: str) -> list[str]:
        c = self.config
        jieba = _jieba()
        out: list[str] = []
        latin: list[str] = []
        for run in _TOKEN_RE.findall(text):
            if _HAS_CJK.match(run):
                out.extend(self._stem(latin))
                latin = []
                out.extend(w for w in jieba.lcut(run) if w.strip() and w not in self._stop_zh)
            elif len(run) >= c.min_token_len and run not in self._stop_en:
                latin.append(run)
        out.extend(self._stem(latin))
        return out

    def _stem(self, words: list[str]) -> list[str]:
        if not (self._stemmer and words):
            return words
        with self._stem_lock:
            return self._stemmer.stemWords(words)

    def analyze_many(self, texts) -> list[list[str]]:
        return [self(t) for t in texts]


def check_compatible(recorded: dict, analyzer: Analyzer, where: str) -> None:
    """Refuse to query an index with an analyzer other than the one it was built with."""
    current = analyzer.describe()
    if recorded != current:
        diff = {k: (recorded.get(k), current.get(k)) for k in set(recorded) | set(current)
                if recorded.get(k) != current.get(k)}
        raise FunnelError(f"{where} was built with a different analyzer ({diff}, as built vs now): "
                          "rebuild it with `funnel index --rebuild` or use the settings it was built with")
