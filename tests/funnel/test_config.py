"""Typed configuration: defaults < TOML file < --set overrides, and clear errors on bad values."""
from __future__ import annotations

import pytest

from funnel.core.config import Config, load_config
from funnel.core.errors import FunnelError


def test_defaults():
    c = load_config()
    assert c == Config()
    assert (c.bm25.k1, c.bm25.b, c.bm25.scorer) == (0.9, 0.4, "bm25")
    assert str(c.paths.store).endswith("store.sqlite") and str(c.paths.index).endswith("index")


def test_file_then_overrides(tmp_path):
    f = tmp_path / "funnel.toml"
    f.write_text('[paths]\nhome = "/data/f"\n[bm25]\nk1 = 1\nb = 0.75\n[analyzer]\nstemmer = ""\n', encoding="utf-8")
    c = load_config(f, ["bm25.k1=1.5", "bm25.scorer=tfidf", 'paths.home="/x"'])
    assert c.bm25.k1 == 1.5 and isinstance(c.bm25.k1, float)
    assert c.bm25.b == 0.75 and c.bm25.scorer == "tfidf" and c.analyzer.stemmer == ""
    assert str(c.paths.home) == "/x"
    assert c.to_dict()["bm25"]["k1"] == 1.5


@pytest.mark.parametrize("override,message", [
    ("bm25.k1=fast", "expected float"),
    ("bm25.nope=1", "unknown key bm25.nope"),
    ("nosuch.key=1", "unknown config section"),
    ("k1=1", "expected section.key=value"),
    ("analyzer.stopwords=3", "expected bool"),
])
def test_bad_overrides(override, message):
    with pytest.raises(FunnelError, match=message):
        load_config(None, [override])


def test_bad_files(tmp_path):
    with pytest.raises(FunnelError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[bm25\nk1 = ", encoding="utf-8")
    with pytest.raises(FunnelError, match="not valid TOML"):
        load_config(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[bm25]\nk1 = 'high'\n", encoding="utf-8")
    with pytest.raises(FunnelError, match=r"wrong\.toml.*|bm25\.k1"):
        load_config(wrong)


@pytest.mark.parametrize("override,message", [
    ("bm25.k1=-5", r"bm25\.k1 = -5\.0: expected a number >= 0"),
    ("bm25.b=7", r"bm25\.b = 7\.0: expected a number in \[0, 1\]"),
    ("bm25.k1=nan", r"bm25\.k1 = nan: expected a finite number"),
    ("bm25.b=inf", r"bm25\.b = inf: expected a finite number"),
    ("train_dense.towers=both", r"train_dense\.towers = 'both': expected one of 'auto', 'shared', 'query'"),
    ("recall.fusion=max", r"recall\.fusion = 'max': expected one of 'weighted', 'rrf'"),
    ("pipeline.recall=sparse", r"pipeline\.recall = 'sparse'"),
    ("fine.dtype=fp8", r"fine\.dtype = 'fp8'"),
    ('pipeline.stages="recall,finee"', r"pipeline\.stages = 'recall,finee'"),
    ('pipeline.stages="coarse,fine"', r"that includes recall"),
    ("crawl.concurrency=0", r"crawl\.concurrency = 0: expected a number >= 1"),
    ("recall.bm25_k=-1", r"recall\.bm25_k = -1"),
    ("serve.default_k=500", r"serve\.default_k = 500: expected at most serve\.max_k"),
])
def test_out_of_range_values_are_refused_at_load(override, message):
    with pytest.raises(FunnelError, match=message):
        load_config(None, [override])


def test_every_bad_key_has_its_own_line(tmp_path):
    f = tmp_path / "funnel.toml"
    f.write_text("[bm25]\nk1 = -5.0\nb = 7\n[recall]\nfusion = 'max'\n", encoding="utf-8")
    with pytest.raises(FunnelError) as info:
        load_config(f, ["fine.dtype=fp8"])
    lines = str(info.value).splitlines()
    assert "funnel.toml" in lines[0] and "--set" in lines[0] and "4 invalid" in lines[0]
    assert [line.split(" = ")[0].strip() for line in lines[1:]] == ["bm25.k1", "bm25.b", "fine.dtype", "recall.fusion"]


def test_seeds_may_be_negative_and_defaults_are_valid():
    assert load_config(None, ["fine.seed=-1"]).fine.seed == -1
    assert load_config(None, ['pipeline.stages="recall,rerank"', "dense.device=cuda:1"]).dense.device == "cuda:1"


@pytest.mark.parametrize("home", ['/data/we#ird?ho%me', "/data/quote\"d'home", "C:\\\\x\\\\y", "/data/π"])
def test_home_is_taken_as_it_is(home):
    config = load_config(None, [], home=home)
    assert config.paths.home == home and config.paths.store == __import__("pathlib").Path(home) / "store.sqlite"
