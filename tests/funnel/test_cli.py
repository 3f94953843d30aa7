"""The `funnel` front door, run as a real subprocess: the main job on the tiny corpus, and errors
that print one line and exit 2 (never a traceback)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def funnel(*args, home=None):
    cmd = [sys.executable, "-m", "funnel.cli.main", "-q"] + (["--home", str(home)] if home else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_main_job_on_tiny(tiny_dir, tmp_path):
    home = tmp_path / "home"
    r = funnel("ingest", "beir", str(tiny_dir), home=home)
    assert r.returncode == 0, r.stderr
    assert "docs 50" in r.stdout
    r = funnel("index", home=home)
    assert r.returncode == 0, r.stderr
    r = funnel("search", "美食的攻略", "--json", home=home)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[0])["doc_id"].startswith("zh")  # JSON lines, best first
    r = funnel("eval", "--data", str(tiny_dir), "--split", "dev", home=home)
    assert r.returncode == 0, r.stderr
    assert "nDCG@10" in r.stdout and (home / "runs" / "bm25-dev.trec").exists()


def test_errors_are_one_line(tiny_dir, tmp_path):
    home = tmp_path / "empty"
    for args in (["search", "anything"], ["eval", "--data", str(tiny_dir), "--split", "dev"],
                 ["ingest", "beir", str(tmp_path / "missing")], ["--set", "bm25.k1=x", "index"]):
        r = funnel(*args, home=home)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr, r.stderr


def test_help_lists_the_commands():
    r = funnel("--help")
    assert r.returncode == 0
    for cmd in ("ingest", "index", "search", "eval", "train"):
        assert cmd in r.stdout


def test_bad_config_values_are_one_error_per_key(tmp_path):
    r = funnel("--set", "bm25.k1=nan", "--set", "bm25.b=7", "index", home=tmp_path / "h")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("error: config (--set): 2 invalid value(s)")
    assert "bm25.k1 = nan: expected a finite number" in r.stderr and "bm25.b = 7.0: expected a number in [0, 1]" in r.stderr
    assert not (tmp_path / "h").exists()  # refused before anything was written


def test_home_with_uri_and_toml_characters(tiny_dir, tmp_path):
    home = tmp_path / "we#ird?ho%me \"q'x"
    r = funnel("ingest", "beir", str(tiny_dir), home=home)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [home.name]  # nothing written beside it
    assert (home / "store.sqlite").is_file()
    r = funnel("index", home=home)
    assert r.returncode == 0, r.stderr
    r = funnel("search", "美食的攻略", "--mode", "bm25", "--json", home=home)
    assert r.returncode == 0 and json.loads(r.stdout.splitlines()[0])["doc_id"].startswith("zh"), r.stderr


def test_analyzer_settings_come_from_the_index(tiny_dir, tmp_path):
    """What the README's [analyzer] comment says: queries use the index's settings; only indexing refuses others."""
    home = tmp_path / "home"
    assert funnel("ingest", "beir", str(tiny_dir), home=home).returncode == 0
    assert funnel("index", home=home).returncode == 0
    plain = funnel("search", "cooking recipes", "--mode", "bm25", "--json", home=home)
    other = funnel("--set", 'analyzer.stemmer=""', "search", "cooking recipes", "--mode", "bm25", "--json", home=home)
    assert plain.returncode == other.returncode == 0, other.stderr
    assert plain.stdout == other.stdout and plain.stdout.strip()
    r = funnel("--set", 'analyzer.stemmer=""', "index", home=home)
    assert r.returncode == 2 and "different analyzer" in r.stderr and "funnel index --rebuild" in r.stderr, r.stderr


def test_failed_first_ingest_leaves_no_store(tiny_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_dir, bad)
    (bad / "corpus.jsonl").write_text('{"_id": "a", "text": "caf\\ud800"}\n', encoding="utf-8")
    home = tmp_path / "home"
    r = funnel("ingest", "beir", str(bad), home=home)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "corpus.jsonl:1" in r.stderr, r.stderr
    assert not (home / "store.sqlite").exists() and not list(home.glob("store.sqlite*"))
    r = funnel("ingest", "beir", str(tiny_dir), home=home)  # a good one afterwards works as a first ingest
    assert r.returncode == 0, r.stderr


def test_pipeline_on_an_empty_store_is_a_clear_error(tmp_path):
    from funnel.core.store import DocumentStore

    home = tmp_path / "home"
    DocumentStore(home / "store.sqlite").close()
    for job in ("pagerank", "index", "features"):
        r = funnel("pipeline", job, home=home)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith("error: document store") and "holds no documents" in r.stderr
