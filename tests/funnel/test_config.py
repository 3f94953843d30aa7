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
