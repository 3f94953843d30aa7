"""Funnel's ranking-inspection dashboard (Streamlit), started by `funnel dashboard`.

Reads the same home as the API (index, store, trained models) through `funnel.api.service.SearchService`,
loaded once per process. Pages: Search (each stage's ranking with rank movement and judgements, the chosen
result's features, BM25 per query term with the matched terms highlighted, LightGBM contributions,
cross-encoder attention by layer and head, link neighbourhood, rating 0-3), Queries (per-query metrics, worst first, and
where each judged document was lost), Compare (two saved TREC runs: per-query deltas, paired tests, one
query's two rankings), Links & PageRank, Evaluation (per-stage metrics on the store's judgements,
committed benchmark tables, the pruning curve), and Recommend when the home has a fitted recommendation
funnel (`funnel.ranking.rec.service.RecService`: a user's history and every stage's items with rank
movement, tables from `dashboard/recommend.py`); a home with only that funnel shows Recommend alone.
Anything not built yet is named with the command that builds it.

The config comes from ``FUNNEL_CONFIG_JSON`` (set by `funnel dashboard`) or ``FUNNEL_HOME``.
"""
from __future__ import annotations

import json
import os

import altair as alt
import pandas as pd
import streamlit as st

from funnel.api.service import SearchService
from funnel.core.config import apply_overrides, Config
from funnel.core.errors import FunnelError
from funnel.core.ratings import GRADES, save_rating
from funnel.dashboard import inspect_funnel as fi
from funnel.dashboard import recommend as dr
from funnel.dashboard import relevance as rel
from funnel.ranking.compare import compare_runs
from funnel.ranking.evaluate import read_trec_run, write_trec_run

PAGES = ["Search", "Queries", "Compare", "Links & PageRank", "Evaluation"]
REC_PAGE = "Recommend"
GRADE_LABELS = {0: "0 not relevant", 1: "1 related", 2: "2 relevant", 3: "3 perfect"}



def _config_json() -> str:
    if os.environ.get("FUNNEL_CONFIG_JSON"):
        return os.environ["FUNNEL_CONFIG_JSON"]
    return json.dumps({"paths": {"home": os.environ.get("FUNNEL_HOME", ".funnel")}})


@st.cache_resource(show_spinner="Loading index and models…")
def load_service(config_json: str):

    config = apply_overrides(Config(), json.loads(config_json), "FUNNEL_CONFIG_JSON")
    return SearchService.open(config)


@st.cache_resource(show_spinner="Loading the recommendation funnel…")
def load_rec(config_json: str):
    """-> (RecService or None, why not or None): None without a message when the home has no fitted funnel."""
    config = apply_overrides(Config(), json.loads(config_json), "FUNNEL_CONFIG_JSON")
    if not (config.paths.rec_funnel / "funnel.json").exists():
        return None, None
    from funnel.ranking.rec.service import RecService  # torch and LightGBM: only when a funnel is there

    try:
        return RecService.load(config), None
    except Exception as exc:  # noqa: BLE001 - shown on the page, the other pages keep working
        return None, str(exc)


@st.cache_resource(show_spinner="Reading the link graph…")
def load_links(config_json: str):
    return fi.LinkGraph(load_service(config_json).store)


def load_judgements(service) -> rel.Judgements:
    """The judgement set chosen in the sidebar plus the ratings (read on every run: ratings change)."""
    dataset, split = rel.parse_choice(st.session_state.get("judgements"))
    return rel.Judgements.load(service.store, service.config.paths.judgements, dataset, split)


def search_page(service, profile: str) -> None:
    st.header("Search")
    query = st.text_input("Query", key="query", placeholder="e.g. list comprehension")
    k = int(st.number_input("Results", min_value=1, max_value=service.config.serve.max_k,
                            value=service.config.serve.default_k, key="k"))
    if not query.strip():
        st.caption("Type a query to see how every stage ranks it.")
        return
    result = service.search(query, k=k, profile=profile, explain=True, explain_depth=max(k, 20))
    judgements = load_judgements(service)
    judged = judgements.of(query)
    st.subheader(f"Final results ({len(result.hits)}) in {result.took_ms:.1f} ms")
    if judged is not None:
        st.caption(f"Judged query `{judgements.query_id(query)}`: {sum(g > 0 for g in judged.values())} relevant, "
                   f"{sum(g <= 0 for g in judged.values())} not relevant documents judged")
    if not result.hits:
        st.warning("No document matches this query.")
        return
    for h in result.hits:
        link = f"[{h.title or h.doc_id}]({h.url})" if h.url else f"**{h.title or h.doc_id}**"
        badge = f" · *{rel.judgement_label(judged.get(h.doc_id))}*" if judged is not None else ""
        st.markdown(f"{h.rank}. {link} · `{h.doc_id}` · score {h.score:.3f}{badge}  \n{h.snippet}")

    frames = fi.stage_frames(service, result)
    timing = pd.DataFrame([{"stage": f"{i + 1}. {s}", "ms": ms, "candidates": n}
                           for i, (s, ms, n, _) in enumerate(frames)])
    stage_charts(timing, fi.rank_paths(result), "doc_id", ["doc_id", "stage", "rank"],
                 "Rank of the final results through the stages")

    if judged is not None and any(g > 0 for g in judged.values()):
        relevant = [d for d, g in judged.items() if g > 0]
        docs = service.store.get_many(relevant)
        st.markdown("**Relevant judged documents through the stages** (rank in each stage's list; blank: not in it)")
        st.dataframe(rel.judged_ranks(result.candidates.trace, judged, {d: docs[d].title for d in docs}),
                     hide_index=True, width="stretch")

    st.subheader("Each stage's ranking")
    for i, (stage, ms, n, frame) in enumerate(frames):
        with st.expander(f"{i + 1}. {stage}: {n} candidates, {ms:.1f} ms", expanded=i == len(frames) - 1):
            st.dataframe(rel.mark_judgements(frame, judged), hide_index=True, width="stretch")

    st.subheader("Inspect a result")
    labels = {h.doc_id: f"{h.rank}. {h.title or h.doc_id}" for h in result.hits}
    doc_id = st.selectbox("Result", list(labels), format_func=labels.get, key="inspect")
    rate_result(service, judgements, query, doc_id, judged)
    inspect_result(service, result, doc_id)


def stage_charts(timing: pd.DataFrame, paths: pd.DataFrame, key: str, tooltip: list[str], title: str) -> None:
    """Side by side: milliseconds per stage, and each shown result's rank through the stages."""
    c1, c2 = st.columns(2)
    with c1:
        st.markdown("**Time per stage**")
        st.altair_chart(alt.Chart(timing).mark_bar().encode(
            x=alt.X("ms:Q", title="milliseconds"), y=alt.Y("stage:N", sort=None),
            tooltip=["stage", "ms", "candidates"]), width="stretch")
    with c2:
        st.markdown(f"**{title}**")
        st.altair_chart(alt.Chart(paths).mark_line(point=True).encode(
            x=alt.X("stage:N", sort=None), y=alt.Y("rank:Q", scale=alt.Scale(reverse=True)),
            color=alt.Color(f"{key}:N", legend=None), tooltip=tooltip), width="stretch")


def rate_result(service, judgements: rel.Judgements, query: str, doc_id: str, judged) -> None:
    """Rate the chosen result 0-3; saved as TREC qrels under HOME/judgements at once."""
    msg = st.session_state.pop("rating_msg", None)
    if msg:
        st.success(msg)
    current = (judged or {}).get(doc_id)
    st.markdown(f"**Rate this result** (now: {rel.judgement_label(current)})")
    grade = st.radio("Grade", list(GRADES), format_func=GRADE_LABELS.get, horizontal=True, key="rate_grade",
                     index=GRADES.index(current) if current in GRADES else 0, label_visibility="collapsed")
    if st.button("Save rating", key="rate_save"):
        qid = judgements.query_id(query)
        path = save_rating(service.config.paths.judgements, qid, query, doc_id, int(grade))
        st.session_state["rating_msg"] = (f"Saved: query {qid}, {doc_id} = {grade} in {path} "
                                          f"(`funnel eval --data {path.parent.parent} --split ratings`)")
        st.rerun()


def inspect_result(service, result, doc_id: str) -> None:
    doc = service.document(doc_id)
    feats = fi.hit_features(result)
    if not feats.empty:
        st.markdown("**Features**")
        st.dataframe(feats[feats["doc_id"] == doc_id], hide_index=True, width="stretch")
    c1, c2 = st.columns(2)
    with c1:
        st.markdown("**LightGBM feature contributions (coarse stage)**")
        contrib = fi.coarse_contributions(service, result, doc_id)
        if contrib is None:
            st.info("No coarse model in this profile yet: train one with `funnel train coarse`.")
        else:
            st.altair_chart(alt.Chart(contrib).mark_bar().encode(
                x=alt.X("contribution:Q"), y=alt.Y("feature:N", sort=None),
                color=alt.condition("datum.contribution > 0", alt.value("#2a9d8f"), alt.value("#e76f51")),
                tooltip=["feature", "value", "contribution"]), width="stretch")
    with c2:
        st.markdown("**Cross-encoder attention (fine stage)**")
        n_layers, n_heads = st.session_state.get("_att_shape", (0, 0))
        layer, head = -1, None
        if n_layers:
            a1, a2 = st.columns(2)
            layer = a1.selectbox("Layer", list(range(n_layers)), index=n_layers - 1, key="att_layer")
            head = a2.selectbox("Head", [None] + list(range(n_heads)), key="att_head",
                                format_func=lambda h: "mean of all" if h is None else str(h))
        att = fi.cross_encoder_attention(service, result.profile, result.query, doc_id, layer=layer, head=head)
        if att is None:
            st.info("No cross-encoder in this profile yet: train one with `funnel train cross-encoder`.")
        else:
            if st.session_state.get("_att_shape") != (att.n_layers, att.n_heads):
                st.session_state["_att_shape"] = (att.n_layers, att.n_heads)
                st.rerun()  # draw the layer and head choices now that the model's shape is known
            grid = pd.DataFrame([{"query token": q, "doc token": f"{j:02d} {d}", "attention": float(att.query_to_doc[i, j])}
                                 for i, q in enumerate(att.query_tokens) for j, d in enumerate(att.doc_tokens)])
            st.caption(f"logit {att.logit:.3f}; layer {att.layer} of {att.n_layers}, "
                       f"{'mean over heads' if att.head is None else f'head {att.head} of {att.n_heads}'}; "
                       f"first {len(att.doc_tokens)} document tokens")
            st.altair_chart(alt.Chart(grid).mark_rect().encode(
                x=alt.X("doc token:N", sort=None), y=alt.Y("query token:N", sort=None),
                color=alt.Color("attention:Q", scale=alt.Scale(scheme="blues")),
                tooltip=["query token", "doc token", "attention"]), width="stretch")
    bm25 = rel.bm25_explanation(service.retriever, result.query, doc_id)
    if bm25 is not None:
        a = bm25.attrs
        st.markdown(f"**{a['scorer'].upper()} per query term** (score {bm25['contribution'].sum():.4f}; "
                    f"document length {a['doc_len']}, average {a['avg_len']:.1f}, k1 {a['k1']}, b {a['b']})")
        st.dataframe(bm25, hide_index=True, width="stretch")
    if doc is not None:
        st.markdown(f"**Document** `{doc.doc_id}`" + (f" · {doc.url}" if doc.url else "")
                    + " · matched terms highlighted")
        terms = set(bm25["term"]) if bm25 is not None else set()
        text = rel.text_window(doc.text, service.retriever.analyzer, terms)
        st.markdown(f'<div class="funnel-doc">{rel.highlight_terms(text, service.retriever.analyzer, terms)}</div>',
                    unsafe_allow_html=True)
        neighbourhood(service, doc_id)


def neighbourhood(service, doc_id: str) -> None:
    links = load_links(_config_json())
    frame = links.neighbourhood(service.store, doc_id)
    st.markdown(f"**Link neighbourhood** ({(frame['direction'] == 'in').sum()} in, "
                f"{(frame['direction'] == 'out').sum()} out)")
    if frame.empty:
        st.caption("No links recorded for this document (BEIR corpora have none; crawled sites do).")
    else:
        st.dataframe(frame, hide_index=True, width="stretch")


def open_query(text: str) -> None:
    """Open `text` on the Search page at the next run (widgets' state is set before they are drawn)."""
    st.session_state["_open_query"] = text
    st.rerun()


def queries_page(service, profile: str) -> None:
    st.header("Queries")
    judgements = load_judgements(service)
    st.caption(f"Judgements: {st.session_state.get('judgements')}; nDCG@10 and Recall@100 of the funnel's "
               "final list; 'lost at' names the stage each relevant document left the funnel.")
    if not judgements.qrels:
        st.info("No judged query in this set: choose another in the sidebar, or rate results on the Search page.")
        return
    n = int(st.number_input("Queries (first N by id)", 1, 5000, 50, key="q_n"))
    key = (st.session_state.get("judgements"), profile, n, service.index_generation(),
           tuple(sorted((q, tuple(sorted(d.items()))) for q, d in judgements.qrels.items())))
    if st.session_state.get("_q_key") != key:
        with st.spinner("Ranking the judged queries…"):
            st.session_state["_q_frame"] = rel.query_metrics(service, judgements, profile, n)
        st.session_state["_q_key"] = key
    frame = st.session_state["_q_frame"]
    st.markdown(f"**{len(frame)} queries, worst first** (mean nDCG@10 {frame['nDCG@10'].mean():.4f}, "
                f"Recall@100 {frame['Recall@100'].mean():.4f}); click a row to open it")
    picked = st.dataframe(frame, hide_index=True, width="stretch", on_select="rerun",
                          selection_mode="single-row", key="q_table")
    rows = picked.selection.rows if picked is not None else []
    if rows:
        open_query(str(frame["query"].iloc[rows[0]]))
    labels = {q: f"{q}: {t[:80]}" for q, t in zip(frame["qid"], frame["query"])}
    qid = st.selectbox("Or choose a query", list(labels), format_func=labels.get, key="q_pick")
    if st.button("Open on the Search page", key="q_open"):
        open_query(judgements.texts[qid])
    st.markdown("**Save these rankings as a run** for the Compare page (another profile, or this dashboard "
                "started with other `--set` values or models, gives the other side)")
    tag = st.text_input("Tag (optional)", key="q_tag", placeholder="e.g. k1-1.2")
    if st.button("Save run", key="q_save"):
        path = write_trec_run(frame.attrs["run"], service.config.paths.runs /
                              rel.run_name(profile, st.session_state.get("judgements"), tag), tag=f"dashboard-{profile}")
        st.success(f"Saved {len(frame.attrs['run'])} queries to {path}")


def compare_page(service) -> None:
    st.header("Compare two runs")
    judgements = load_judgements(service)
    mode = st.radio("Compare", ["saved runs", "two configurations"], horizontal=True, key="cmp_mode")
    if mode == "two configurations":
        pair = configurations_form(service, judgements)
        if pair is not None:  # scored on the queries both configurations ran, not the whole judged set
            ran = set(pair[1]) | set(pair[3])
            show_comparison(service, judgements, *pair, qrels={q: j for q, j in judgements.qrels.items() if q in ran})
    else:
        pair = saved_runs_form(service)
        if pair is not None:
            show_comparison(service, judgements, *pair)


def saved_runs_form(service):
    """Two TREC runs saved under HOME/runs -> (name A, run A, name B, run B), or None."""
    runs = rel.list_runs(service.config.paths.runs)
    if len(runs) < 2:
        st.info(f"Fewer than two TREC runs in {service.config.paths.runs}: save some with `funnel eval` "
                "(--run-file, --profile, --set ...), or compare two configurations live.")
        return None
    names = [p.name for p in runs]
    c1, c2 = st.columns(2)
    a = c1.selectbox("Run A (baseline)", names, index=0, key="cmp_a")
    b = c2.selectbox("Run B", names, index=1, key="cmp_b")
    return a, read_trec_run(service.config.paths.runs / a), b, read_trec_run(service.config.paths.runs / b)


def configurations_form(service, judgements: rel.Judgements):
    """Two configurations run live on the chosen judgements: a profile and ``section.key=value`` lines
    each (e.g. ``pipeline.stages="recall,coarse"``, ``fine.model="/path/to/model"``); both runs are saved
    under HOME/runs so that `funnel compare` reads them too -> (name A, run A, name B, run B), or None."""
    profiles = list(service.profiles)
    cols = st.columns(2)
    specs = []
    for col, side, default in zip(cols, "AB", ("", 'pipeline.stages="recall,coarse,rerank"')):
        profile = col.selectbox(f"Profile {side}", profiles, key=f"cfg_profile_{side}")
        text = col.text_area(f"Overrides {side} (section.key=value, one per line)", default, key=f"cfg_set_{side}")
        specs.append((side, profile, [line.strip() for line in text.splitlines() if line.strip()]))
    n = st.number_input("Judged queries", 1, 10_000, 50, key="cfg_n")
    if st.button("Run both configurations", key="cfg_run"):
        bar = st.progress(0.0, text="running A")
        runs = []
        for i, (side, profile, overrides) in enumerate(specs):
            def tick(done, total, side=side, i=i):
                bar.progress((i + done / total) / 2, text=f"running {side}: {done}/{total} queries")
            try:
                run = rel.configuration_run(service.config, profile, overrides, judgements, int(n), on_query=tick)
            except (FunnelError, OSError) as exc:
                bar.empty()
                st.error(f"Configuration {side}: {exc}")
                return None
            name = rel.run_name(profile, st.session_state.get("judgements"), f"config{side}")
            write_trec_run(run, service.config.paths.runs / name, tag=f"config-{side}")
            runs.append((f"{side}: {profile} {' '.join(overrides) or '(as served)'}", run))
        bar.empty()
        st.session_state["cfg_runs"] = runs
    runs = st.session_state.get("cfg_runs")
    if not runs:
        st.info("Set two configurations and run them.")
        return None
    return runs[0][0], runs[0][1], runs[1][0], runs[1][1]


def show_comparison(service, judgements: rel.Judgements, a: str, run_a, b: str, run_b, qrels=None) -> None:
    cmp = compare_runs(run_a, run_b, judgements.qrels if qrels is None else qrels)
    if not any(q in run_a or q in run_b for q in cmp.queries):
        st.warning(f"Neither run ranks a query judged in {st.session_state.get('judgements')}: "
                   "choose the judgements these runs were made for in the sidebar.")
        return
    st.markdown(f"**{a}** vs **{b}** on {len(cmp.queries)} judged queries ({st.session_state.get('judgements')})")
    st.dataframe(rel.summary_frame(cmp), hide_index=True, width="stretch")
    per_query = rel.comparison_frame(cmp, judgements.texts)
    st.markdown(f"**Per query**, largest nDCG@10 regression first: {len(cmp.improved())} improved, "
                f"{len(cmp.regressed())} regressed")
    st.dataframe(per_query, hide_index=True, width="stretch")
    labels = {q: f"{q} ({d:+.3f}): {judgements.texts.get(q, '')[:70]}"
              for q, d in zip(per_query["qid"], per_query["nDCG@10 delta"])}
    qid = st.selectbox("Query", list(labels), format_func=labels.get, key="cmp_q")
    ids = set(run_a.get(qid, {})) | set(run_b.get(qid, {}))
    docs = service.store.get_many(sorted(ids))
    table = rel.side_by_side(run_a.get(qid, {}), run_b.get(qid, {}), judgements.qrels.get(qid),
                             {d: docs[d].title for d in docs})
    st.markdown(f"**Both rankings of {qid}** (top 20 of each; move = rank in A - rank in B)")
    st.dataframe(table, hide_index=True, width="stretch")


def links_page(service) -> None:
    st.header("Links & PageRank")
    top = fi.pagerank_top(service)
    if top is None:
        st.info("PageRank not computed yet: run `funnel pipeline pagerank` (or `funnel demo`).")
    else:
        st.subheader("Top pages by PageRank")
        st.altair_chart(alt.Chart(top).mark_bar().encode(
            x=alt.X("pagerank:Q"), y=alt.Y("title:N", sort=None), tooltip=["doc_id", "url", "pagerank"]),
            width="stretch")
        st.dataframe(top, hide_index=True, width="stretch")
    links = load_links(_config_json())
    st.caption(f"{links.n_links} links in the store.")
    default = str(top["doc_id"].iloc[0]) if top is not None else ""
    doc_id = st.text_input("Document id for its neighbourhood", value=default, key="nb_doc")
    if doc_id:
        if service.document(doc_id) is None:
            st.warning(f"No document with id {doc_id!r}.")
        else:
            neighbourhood(service, doc_id)


def eval_page(service, profile: str) -> None:
    st.header("Evaluation")
    sets = fi.judged_sets(service.config.paths.store)
    if not sets:
        st.info("The store has no relevance judgements (ingest a BEIR folder with qrels to evaluate here).")
    else:
        choice = st.selectbox("Judgements", [f"{d} / {s}" for d, s in sets], key="eval_set")
        n = int(st.number_input("Queries (first N by id)", 1, 2000, 50, key="eval_n"))
        if st.button("Evaluate every stage", key="eval_run"):
            dataset, split = choice.split(" / ", 1)
            with st.spinner("Ranking the judged queries…"):
                metrics, lat = fi.stage_metrics(service, dataset, split, profile, n)
            st.markdown(f"**Metrics after each stage** ({metrics.attrs['queries']} queries, profile {profile})")
            st.dataframe(metrics, hide_index=True, width="stretch")
            long = metrics.melt("stage", var_name="metric", value_name="value")
            st.altair_chart(alt.Chart(long).mark_bar().encode(
                x=alt.X("stage:N", sort=None), y="value:Q", color="stage:N", column="metric:N",
                tooltip=["stage", "metric", "value"]))
            st.markdown("**Latency per stage**")
            st.dataframe(lat, hide_index=True, width="stretch")
    st.subheader("Pruning curve")
    files = fi.result_files()
    if "pruning_curve.png" in files:
        st.image(str(files["pruning_curve.png"]), caption="heads kept vs nDCG@10 vs latency (benchmarks/pruning.py)")
    else:
        st.info("Pruning curve not built yet: run `funnel prune` / `benchmarks/pruning.py`.")
    if "pruning.md" in files:
        st.markdown(files["pruning.md"].read_text(encoding="utf-8"))
    st.subheader("Committed benchmark results")
    tables = [n for n in files if n.endswith(".md") and n != "pruning.md"]
    if not tables:
        st.caption("No benchmark results under benchmarks/results/ yet.")
    for name in tables:
        with st.expander(name):
            st.markdown(files[name].read_text(encoding="utf-8"))


def recommend_page(rec) -> None:
    st.header("Recommend")
    st.caption(f"{rec.ds.n_users} users and {rec.ds.n_items} items in the log ({rec.dataset or 'interactions'}); "
               "every stage's list, and the rules that chose the items shown.")
    mode = st.radio("For", ["A user of the log", "A history (cold start)"], horizontal=True, key="rec_mode")
    k = int(st.number_input("Items", min_value=1, max_value=rec.max_k, value=rec.default_k, key="rec_k"))
    if mode == "A user of the log":
        users = [str(u) for u in rec.ds.user_ids]
        user = (st.selectbox("User", users, key="rec_user") if len(users) <= 10_000
                else st.text_input("User id", value=users[0], key="rec_user"))
        if not rec.known_user(user):
            st.warning(f"No user with id {user!r} in the log.")
            return
        history = rec.history(user)
        args = {"user": user}
    else:
        text = st.text_area("History: item ids, oldest first (commas or spaces)", key="rec_history",
                            placeholder="e.g. 50, 172, 181")
        ids = dr.parse_history(text)
        if not ids:
            st.caption("Type the item ids someone interacted with to see what the funnel makes of them.")
            return
        unknown = [i for i in ids if rec.item(i) is None]
        if unknown:
            st.error(f"Unknown item ids: {', '.join(unknown[:10])}")
            return
        history = [{**rec.item(i), "ts": None} for i in ids]
        args = {"history": ids}
    result = rec.recommend(**args, k=k, explain=True)

    st.subheader(f"Recommendations ({len(result['items'])}) in {sum(result['ms'].values()):.1f} ms")
    st.dataframe(dr.items_frame(result), hide_index=True, width="stretch")
    st.markdown(f"**History** ({len(history)} interactions, newest last)")
    st.dataframe(dr.history_frame(history), hide_index=True, width="stretch", height=240)

    stage_charts(dr.stage_timing(result), dr.rank_paths(result), "item_id", ["item_id", "title", "stage", "rank"],
                 "Rank of the shown items through the stages")

    st.subheader("Each stage's candidates")
    frames = dr.stage_frames(result, rec.item)
    for i, (stage, ms, n, frame) in enumerate(frames):
        with st.expander(f"{i + 1}. {stage}: {n} candidates, {ms:.1f} ms", expanded=i == len(frames) - 1):
            st.dataframe(frame, hide_index=True, width="stretch")

    st.subheader("Rerank trace")
    for note, table in dr.trace_tables(result.get("trace", []), rec.item):
        st.markdown(f"- {note}")
        if table is not None and not table.empty:
            st.dataframe(table, hide_index=True, width="stretch")


def main() -> None:
    st.set_page_config(page_title="Funnel", layout="wide")
    st.title("Funnel: inside the ranking")
    config_json = _config_json()
    rec, rec_problem = load_rec(config_json)
    try:
        service = load_service(config_json)
    except Exception as exc:  # noqa: BLE001 - show the user what is missing instead of a traceback
        if rec is None:
            st.error(f"Cannot open the Funnel home: {exc}")
            st.stop()
        service = None  # a home with only a recommendation funnel: the Recommend page alone
    pages = (PAGES if service is not None else []) + ([REC_PAGE] if rec is not None else [])
    pending = st.session_state.pop("_open_query", None)
    if pending is not None:  # a query opened from the Queries page
        st.session_state["page"], st.session_state["query"] = "Search", pending
    profile = None
    with st.sidebar:
        page = st.radio("Page", pages, key="page")
        if service is not None:
            profile = st.selectbox("Profile", list(service.profiles), key="profile")
            st.selectbox("Judgements", rel.ratings_choice(fi.judged_sets(service.config.paths.store)),
                         key="judgements", help="marks results, and scores the Queries and Compare pages; ratings "
                                                "saved here always count")
            st.caption(f"{service.n_docs} documents · home `{service.config.paths.home}`")
            st.caption("Stages: " + " → ".join(service.stage_names(profile)))
        if rec is not None:
            st.caption(f"Recommendation: {rec.ds.n_users} users, {rec.ds.n_items} items · recall → coarse → fine "
                       "→ rerank")
        elif rec_problem:
            st.caption(f"Recommendation not loaded: {rec_problem}")
    if page == REC_PAGE:
        recommend_page(rec)
    elif page == "Search":
        search_page(service, profile)
    elif page == "Queries":
        queries_page(service, profile)
    elif page == "Compare":
        compare_page(service)
    elif page == "Links & PageRank":
        links_page(service)
    else:
        eval_page(service, profile)


main()
