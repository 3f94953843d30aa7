import numpy as np

from funnel.ranking.rec.rerank import RerankConfig, mmr_select, place_pinned, popularity_percentile, rerank

# items 1..6; genres: 1,2,3 Action; 4 Comedy; 5 Drama; 6 Action+Comedy
GENRES = np.zeros((7, 3), bool)
GENRES[[1, 2, 3], 0] = True
GENRES[4, 1] = True
GENRES[5, 2] = True
GENRES[6, [0, 1]] = True
POP = popularity_percentile(np.array([0, 60, 50, 40, 30, 20, 10]))
ITEMS = np.array([1, 2, 3, 4, 5, 6])
SCORES = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])


def test_pure_relevance_and_seen_filter():
    trace = {}
    out = rerank(ITEMS, SCORES, history=[2], item_genres=GENRES, pop_pct=POP, config=RerankConfig(k=3), trace=trace)
    assert out.tolist() == [1, 3, 4]
    assert trace["seen_removed"] == [2]


def test_blocked_and_pinned():
    cfg = RerankConfig(k=4, blocked=frozenset({1}), pinned={6: 0})
    trace = {}
    out = rerank(ITEMS, SCORES, [], GENRES, POP, cfg, trace)
    assert out.tolist() == [6, 2, 3, 4]
    assert trace["blocked_removed"] == [1] and trace["pinned"] == {6: 0}
    assert place_pinned(np.array([1, 2, 3]), {9: 5}, 3).tolist() == [1, 2, 3]  # slot past the end: dropped at k


def test_genre_cap():
    trace = {}
    out = rerank(ITEMS, SCORES, [], GENRES, POP, RerankConfig(k=4, max_per_genre=1), trace)
    # one Action item (1), then Comedy 4, Drama 5; 2, 3, 6 skipped; the cap leaves 3 items, so 2 fills slot 4
    assert out.tolist() == [1, 4, 5, 2]
    assert trace["genre_cap_relaxed"] == [1]  # position of item 2 in the candidates


def test_mmr_diversifies():
    rel = np.array([1.0, 0.95, 0.9, 0.5])
    genres = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], bool)
    assert mmr_select(rel, genres, 2, mmr_lambda=1.0).tolist() == [0, 1]
    assert mmr_select(rel, genres, 2, mmr_lambda=0.5).tolist() == [0, 3]


def test_popularity_damper_promotes_tail():
    out = rerank(ITEMS, np.ones(6) + np.arange(6)[::-1] * 0.01, [], GENRES, POP,
                 RerankConfig(k=2, popularity_damping=2.0))
    assert out.tolist() == [6, 5]
