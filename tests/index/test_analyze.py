"""Analyzers: English (normalise, lowercase, stop words, Snowball), Chinese (jieba + stop words), mixed."""
from __future__ import annotations

import pytest

from funnel.core.config import AnalyzerConfig
from funnel.core.errors import FunnelError
from funnel.index.analyze import Analyzer, check_compatible


@pytest.fixture(scope="module")
def analyzer():
    return Analyzer()


def test_english(analyzer):
    assert analyzer("The Running of the Dogs, and cats!") == ["run", "dog", "cat"]
    assert analyzer("Vitamin-D deficiency increases risks") == ["vitamin", "d", "defici", "increas", "risk"]


def test_unicode_normalisation(analyzer):
    # full-width letters and the "ﬁ" ligature fold to ASCII under NFKC
    assert analyzer("ＡＢＣ ﬁsh") == analyzer("abc fish") == ["abc", "fish"]


def test_chinese_segmentation_and_stopwords(analyzer):
    assert analyzer("美食的攻略") == ["美食", "攻略"]
    assert analyzer("北京的美食攻略") == ["北京", "美食", "攻略"]


def test_mixed_language(analyzer):
    assert analyzer("Python 美食的攻略 running") == ["python", "美食", "攻略", "run"]


def test_single_letters_and_digits_are_terms(analyzer):
    # short technical queries hinge on them (min_token_len 1, as Lucene's standard analyzer)
    assert analyzer("type 1 diabetes") == ["type", "1", "diabet"]
    assert analyzer("type 1 diabetes") != analyzer("type 2 diabetes")
    assert analyzer("hepatitis B") == ["hepat", "b"]
    assert analyzer("a cat") == ["cat"]  # one-letter stop words still go
    assert Analyzer(AnalyzerConfig(min_token_len=2))("type 1 diabetes") == ["type", "diabet"]


def test_settings_change_output():
    plain = Analyzer(AnalyzerConfig(stemmer="", stopwords=False, min_token_len=1))
    assert plain("The Running of a dog") == ["the", "running", "of", "a", "dog"]


def test_unknown_stemmer_is_a_clear_error():
    with pytest.raises(FunnelError, match="unknown language 'klingon'"):
        Analyzer(AnalyzerConfig(stemmer="klingon"))


def test_describe_and_compatibility(analyzer):
    desc = analyzer.describe()
    assert desc["name"] == "funnel-standard" and desc["stemmer"] == "english"
    check_compatible(desc, Analyzer(), "index x")
    with pytest.raises(FunnelError, match="different analyzer"):
        check_compatible(desc, Analyzer(AnalyzerConfig(stemmer="")), "index x")
