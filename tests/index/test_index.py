"""The segmented on-disk index: round trip, incremental segments == full build, merge, deletes,
atomic publish (a failed or killed build leaves the previous index usable)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from funnel.crawler.beir import ingest_beir, read_qrels, read_queries
from funnel.core.config import AnalyzerConfig
from funnel.core.errors import FunnelError
from funnel.core.store import Document, DocumentStore
from funnel.index.analyze import Analyzer
from funnel.index.builder import IndexWriter, build_index, build_segment, read_manifest
from funnel.index.searcher import Bm25Retriever, IndexReader
from funnel.index.segments import read_segment

ROOT = Path(__file__).resolve().parents[2]


def _scores(index_dir, queries) -> dict[str, dict[str, float]]:
    """doc id -> score for every query (ordinals differ between layouts; doc ids don't)."""
    r = Bm25Retriever.open(index_dir)
    out = {}
    for qid, q in queries.items():
        s = r.score(q)
        nz = np.flatnonzero(s)
        out[qid] = {r.reader.doc_ids[i]: float(s[i]) for i in nz if r.reader.live[i]}
    return out


def test_segment_round_trip_and_format(tiny_home):
    index = tiny_home / "index"
    manifest = json.loads((index / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["generation"] == 1
    assert manifest["analyzer"] == Analyzer().describe()
    seg_dir = index / manifest["segments"][0]["name"]
    seg = read_segment(seg_dir)
    meta = json.loads((seg_dir / "segment.json").read_text())
    assert meta["n_docs"] == 50 == len(seg.doc_ids)
    assert seg.terms == sorted(seg.terms)
    assert seg.offsets.dtype == np.int64 and seg.offsets[0] == 0 and seg.offsets[-1] == len(seg.doc_ords)
    assert meta["n_postings"] == len(seg.tfs) and meta["sum_doc_len"] == int(np.sum(seg.doc_lens))
    for t in range(len(seg.terms)):  # doc ordinals ascend within each term's postings
        assert np.all(np.diff(seg.doc_ords[seg.offsets[t]:seg.offsets[t + 1]]) > 0)
    # postings agree with the analysed documents
    analyzer = Analyzer()
    with DocumentStore(tiny_home / "store.sqlite", readonly=True) as store:
        doc = store.get(seg.doc_ids[7])
    from funnel.index.builder import doc_text
    terms = analyzer(doc_text(doc))
    assert seg.doc_lens[7] == len(terms)
    t = seg.terms.index(terms[0])
    lo, hi = seg.offsets[t], seg.offsets[t + 1]
    pos = np.searchsorted(seg.doc_ords[lo:hi], 7)
    assert seg.doc_ords[lo + pos] == 7 and seg.tfs[lo + pos] == terms.count(terms[0])


def _split_build(tiny_dir, home: Path, fraction: float) -> Path:
    """Ingest the first `fraction` of the corpus, index, ingest the rest, index again (new segment)."""
    lines = (tiny_dir / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    cut = int(len(lines) * fraction)
    with DocumentStore(home / "store.sqlite") as store:
        docs = [json.loads(x) for x in lines]
        store.put_docs([Document(d["_id"], d.get("title", ""), d["text"]) for d in docs[:cut]])
        build_index(store, home / "index", Analyzer(), progress=False)
        store.put_docs([Document(d["_id"], d.get("title", ""), d["text"]) for d in docs[cut:]])
        build_index(store, home / "index", Analyzer(), progress=False)
    return home / "index"


def test_incremental_segments_score_like_a_full_build(tiny_dir, tiny_home, tmp_path):
    queries = read_queries(tiny_dir)
    full = _scores(tiny_home / "index", queries)
    index = _split_build(tiny_dir, tmp_path, 0.9)
    assert len(read_manifest(index)["segments"]) == 2
    assert _scores(index, queries) == full  # bit-identical, not just close
    IndexWriter(index, Analyzer()).merge()
    assert len(read_manifest(index)["segments"]) == 1
    assert _scores(index, queries) == full


def test_updated_documents_are_deleted_from_old_segments(tiny_home_copy):
    home = tiny_home_copy
    with DocumentStore(home / "store.sqlite") as store:
        old = next(store.iter_docs())
        target, old_text = old.doc_id, f"{old.title} {old.text}"
        store.put_docs([Document(target, "zebra", "quagga okapi")])
        build_index(store, home / "index", Analyzer(), progress=False)
    manifest = read_manifest(home / "index")
    assert len(manifest["segments"]) == 2 and manifest["segments"][0]["deletes"]
    r = Bm25Retriever.open(home / "index")
    assert r.reader.n_docs == 50 and r.reader.n_total == 51
    assert r.search("okapi").doc_ids == [target]
    for term in set(r.analyzer(old_text)):  # the replaced copy is deleted: its words no longer find it
        assert target not in r.search_terms([term], k=100).doc_ids
    before = _scores(home / "index", {"q": "zebra okapi cell protein"})
    IndexWriter(home / "index", Analyzer()).merge()
    r2 = Bm25Retriever.open(home / "index")
    assert r2.reader.n_total == 50 and _scores(home / "index", {"q": "zebra okapi cell protein"}) == before


def test_nothing_new_is_a_no_op_and_rebuild_replaces(tiny_home_copy):
    home = tiny_home_copy
    with DocumentStore(home / "store.sqlite") as store:
        m1 = build_index(store, home / "index", Analyzer(), progress=False)
        assert m1["generation"] == 1
        m2 = build_index(store, home / "index", Analyzer(), incremental=False, progress=False)
    assert m2["generation"] == 2 and len(m2["segments"]) == 1
    assert sorted(p.name for p in (home / "index").iterdir() if p.name.startswith("seg-")) == ["seg-000002"]


def test_analyzer_mismatch_and_empty_store(tiny_home_copy, tmp_path):
    with DocumentStore(tiny_home_copy / "store.sqlite") as store:
        store.put_docs([Document("new", text="new text")])
        with pytest.raises(FunnelError, match="different analyzer"):
            build_index(store, tiny_home_copy / "index", Analyzer(AnalyzerConfig(stemmer="")), progress=False)
    with DocumentStore(tmp_path / "empty.sqlite") as empty:
        with pytest.raises(FunnelError, match="empty"):
            build_index(empty, tmp_path / "idx", Analyzer(), progress=False)
    with pytest.raises(FunnelError, match="no index"):
        IndexReader(tmp_path / "nothing")


def test_a_failing_build_leaves_the_previous_index(tiny_home_copy):
    home = tiny_home_copy
    before = _scores(home / "index", {"q": "cell protein cancer"})
    with DocumentStore(home / "store.sqlite") as store:
        def failing_docs():
            yield from list(store.iter_docs())[:10]
            raise OSError("disk vanished")
        with pytest.raises(OSError):
            seg = build_segment(failing_docs(), Analyzer(), progress=False)
            IndexWriter(home / "index", Analyzer()).rebuild(seg, 99)
    assert _scores(home / "index", {"q": "cell protein cancer"}) == before


KILLED_BUILD = textwrap.dedent("""
    import sys, time
    import funnel.index.builder as b
    from funnel.core.store import DocumentStore
    from funnel.index.analyze import Analyzer
    real = b.write_segment
    def slow_write(out_dir, seg):
        real(out_dir, seg)          # the new segment's files are on disk, not yet renamed or published
        print("WRITTEN", flush=True)
        time.sleep(60)
    b.write_segment = slow_write
    with DocumentStore(sys.argv[1]) as store:
        b.build_index(store, sys.argv[2], Analyzer(), incremental=False, progress=False)
""")


def test_kill_9_mid_publish_leaves_a_usable_index(tiny_home_copy):
    home = tiny_home_copy
    with DocumentStore(home / "store.sqlite") as store:
        store.put_docs([Document("late", text="a late okapi arrives")])
    before = _scores(home / "index", {"q": "okapi cell protein"})
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(home / "store.sqlite"), str(home / "index")],
                            stdout=subprocess.PIPE, cwd=ROOT, text=True)
    try:
        assert proc.stdout.readline().strip() == "WRITTEN"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert any(p.name.startswith(".tmp-") for p in (home / "index").iterdir()), "the kill left a half-published build"
    assert _scores(home / "index", {"q": "okapi cell protein"}) == before  # readers still see the old index
    with DocumentStore(home / "store.sqlite") as store:  # the next build cleans up and completes
        build_index(store, home / "index", Analyzer(), progress=False)
    assert not any(p.name.startswith(".tmp-") for p in (home / "index").iterdir())
    assert Bm25Retriever.open(home / "index").search("okapi").doc_ids == ["late"]


def test_one_writer_at_a_time(tiny_home_copy):
    import fcntl
    index = tiny_home_copy / "index"
    with open(index / "write.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(FunnelError, match="being written by another process"):
            IndexWriter(index, Analyzer()).merge()


@pytest.mark.slow
def test_scifact_incremental_equals_full(scifact_dir, tmp_path):
    """90% + 10% segments score every dev query exactly like one full build, before and after merge."""
    queries = read_queries(scifact_dir)
    with DocumentStore(tmp_path / "full" / "store.sqlite") as store:
        ingest_beir(scifact_dir, store, name="scifact")
        build_index(store, tmp_path / "full" / "index", Analyzer(), progress=False)
    queries = {q: queries[q] for q in sorted(read_qrels(scifact_dir, "dev"))}
    full = _scores(tmp_path / "full" / "index", queries)
    index = _split_build(scifact_dir, tmp_path / "split", 0.9)
    assert _scores(index, queries) == full
    IndexWriter(index, Analyzer()).merge()
    assert _scores(index, queries) == full


@pytest.mark.parametrize("damage", ["not json {", '{"segments": 3}', "[]", b"\xff\xfe".decode("latin-1")])
def test_damaged_manifest_names_the_file_and_rebuild_recovers(tiny_home_copy, damage):
    home = tiny_home_copy
    before = _scores(home / "index", {"q": "cell protein cancer"})
    (home / "index" / "manifest.json").write_text(damage, encoding="latin-1")
    for open_index in (lambda: IndexReader(home / "index"), lambda: Bm25Retriever.open(home / "index")):
        with pytest.raises(FunnelError, match=r"manifest\.json: damaged index manifest .*funnel index --rebuild"):
            open_index()
    with DocumentStore(home / "store.sqlite") as store:
        with pytest.raises(FunnelError, match=r"manifest\.json: damaged index manifest"):
            build_index(store, home / "index", Analyzer(), progress=False)  # incremental: never guesses
        build_index(store, home / "index", Analyzer(), incremental=False, progress=False)  # what the message says
    assert _scores(home / "index", {"q": "cell protein cancer"}) == before


@pytest.mark.parametrize("damage", ["segment folder", "tfs.npy", "terms.json", "segment.json"])
def test_missing_or_damaged_segment_file_is_named(tiny_home_copy, damage):
    home = tiny_home_copy
    seg = home / "index" / read_manifest(home / "index")["segments"][0]["name"]
    if damage == "segment folder":
        import shutil
        shutil.rmtree(seg)
        where = rf"{seg.name}: segment folder missing"
    elif damage == "tfs.npy":
        (seg / damage).unlink()
        where = rf"{seg.name}/tfs\.npy: cannot be read \(FileNotFoundError"
    else:
        (seg / damage).write_text("{truncated", encoding="utf-8")
        where = rf"{seg.name}/{damage.replace('.', '[.]')}: cannot be read"
    with pytest.raises(FunnelError, match=where + r".*funnel index --rebuild"):
        Bm25Retriever.open(home / "index")
    r = subprocess.run([sys.executable, "-m", "funnel.cli.main", "-q", "--home", str(home), "search", "cell",
                        "--mode", "bm25"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "funnel.cli.main", "-q", "--home", str(home), "index", "--rebuild"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(Bm25Retriever.open(home / "index").search("cell", 5).doc_ids) == 5
