"""In-process episode throughput per environment at several catalog sizes, in one run.

Policy: the same two-step policy everywhere (`two_step_action`): one tool call, then an
answer (a journey repeats the pair for each of its requests). The tool call is the one a
shopper-facing agent would start with: ``catalog_search`` with the shopper's opening for
E_PD / E_SUB / E_BUNDLE, ``user_get_visit_history`` for E_CART, ``order_list`` for E_RETURN
/ E_STATUS, ``policy_search`` for E_POLICY; the answer uses what the call returned.

BM25 search is excluded: the catalog's searcher is wrapped to time every search, and that
time is subtracted from the step it ran in and from the episode wall time (the columns
``with_search_*`` keep the raw figures). What is left is what the environment itself costs:
reset (goal generation), tool bookkeeping, shopper reactions and scoring.

Printed per size and env: episodes/s (wall clock) and episodes per CPU-second of this
process (search excluded from both), reset p50 and step p99 in wall and CPU time (search
excluded; the checks use CPU time, which a busy neighbour does not inflate); then per env
the ratio of episodes per CPU-second at the smallest over the largest size, which must stay
under 2 for catalog-size independence (CPU time, because on a shared machine the wall-clock
ratio measures the neighbours' load as much as ours; the wall ratio is printed beside it), and the pass/fail of reset p50 <= 1 ms and step
p99 <= 20 ms at the largest size. Catalog generation and search-index building are timed
separately (with ``--catalog-cache DIR`` catalogs are saved once, with their row lookups and
index, and memory-mapped on later runs). With ``--heuristic``, the heuristic policy's
episodes/s is measured too.

    python benchmarks/episodes.py --sizes 10000,100000,2000000 --episodes 200
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from pathlib import Path

import numpy as np

from ecomrlve.catalog_service import Catalog
from ecomrlve.envs import ENV_IDS, make_env
from ecomrlve.policies import HeuristicPolicy

OUT = Path(__file__).resolve().parent / "results" / "episodes.json"
MAX_DIFFICULTY_CYCLE = 13  # episodes cycle over d = 0..12
RESET_P50_LIMIT_MS = 1.0
STEP_P99_LIMIT_MS = 20.0
SIZE_RATIO_LIMIT = 2.0


class TimedSearcher:
    """Wraps a searcher and accumulates the wall (`seconds`) and CPU (`cpu_seconds`)
    seconds spent in `search`."""

    def __init__(self, inner):
        self.inner = inner
        self.seconds = 0.0
        self.cpu_seconds = 0.0

    def search(self, query, filters=None, top_k=10):
        t, c = time.perf_counter(), time.process_time()
        try:
            return self.inner.search(query, filters, top_k)
        finally:
            self.seconds += time.perf_counter() - t
            self.cpu_seconds += time.process_time() - c

    def __getattr__(self, name):
        return getattr(self.inner, name)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _last_tool_result(obs: dict, name: str) -> dict:
    for m in reversed(obs["messages"]):
        if m["role"] == "tool" and m.get("name") == name:
            return json.loads(m["content"])
    return {}


def _opening(obs: dict) -> str:
    users = [m["content"] for m in obs["messages"] if m["role"] == "user"]
    return users[-1] if users else ""


def two_step_action(kind: str, obs: dict, calls_made: bool) -> dict:
    """The benchmark policy for one request of kind `kind`: a tool call first, an answer next."""
    if not calls_made:
        if kind in ("E_PD", "E_SUB", "E_BUNDLE"):
            call = {"name": "catalog_search",
                    "args": {"query": _opening(obs)[:400], "filters": {"in_stock": True}, "top_k": 10}}
        elif kind == "E_CART":
            call = {"name": "user_get_visit_history", "args": {}}
        elif kind in ("E_RETURN", "E_STATUS"):
            call = {"name": "order_list", "args": {}}
        else:
            call = {"name": "policy_search", "args": {"query": _opening(obs)[:400], "top_k": 3}}
        return {"tool_calls": [call]}
    if kind in ("E_PD", "E_SUB", "E_BUNDLE"):
        hits = _last_tool_result(obs, "catalog_search").get("results", [])
        answer = {"recommended_product_ids": [h["product_id"] for h in hits[:5]]}
    elif kind == "E_CART":
        answer = {"done": True}
    elif kind in ("E_RETURN", "E_STATUS"):
        orders = _last_tool_result(obs, "order_list").get("orders", [])
        first = orders[0] if orders else {}
        answer = {"selected_order_id": first.get("order_id", "none")}
        if kind == "E_RETURN":
            lines = first.get("lines") or [{}]
            answer |= {"selected_line_id": lines[0].get("line_id", "none"), "eligible": True}
        else:
            answer["order_status"] = first.get("status", "delivered")
    else:
        answer = {"policy_answer": "yes"}
    return {"answer": answer | {"env": kind}}


def _kind(env) -> str:
    return env.active.kind if env.env_id == "E_JOURNEY" else env.env_id


def run_env(env, searcher: TimedSearcher, episodes: int, max_seconds: float) -> dict:
    resets, steps, steps_raw, resets_cpu, steps_cpu = [], [], [], [], []
    n, wall, search_total, cpu, search_cpu = 0, 0.0, 0.0, 0.0, 0.0
    budget_start = time.perf_counter()
    while n < episodes and time.perf_counter() - budget_start < max_seconds:
        t0, c0 = time.perf_counter(), time.process_time()
        s0, sc0 = searcher.seconds, searcher.cpu_seconds
        t, c = time.perf_counter(), time.process_time()
        obs, _ = env.reset(seed=n, options={"difficulty": n % MAX_DIFFICULTY_CYCLE})
        resets.append(time.perf_counter() - t - (searcher.seconds - s0))
        resets_cpu.append(time.process_time() - c - (searcher.cpu_seconds - sc0))
        done, kind, called = False, _kind(env), False
        while not done:
            action = two_step_action(kind, obs, called)
            s1, sc1 = searcher.seconds, searcher.cpu_seconds
            t, c = time.perf_counter(), time.process_time()
            obs, _, term, trunc, _ = env.step(action)
            raw = time.perf_counter() - t
            steps_cpu.append(time.process_time() - c - (searcher.cpu_seconds - sc1))
            steps_raw.append(raw)
            steps.append(raw - (searcher.seconds - s1))
            done = term or trunc
            if "answer" in action:
                kind, called = (_kind(env), False) if not done else (kind, False)
            else:
                called = True
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        search_total += searcher.seconds - s0
        search_cpu += searcher.cpu_seconds - sc0
        n += 1
    env_wall = wall - search_total
    return {
        "episodes": n,
        "episodes_per_cpu_s": round(n / max(cpu - search_cpu, 1e-9), 2),
        "episodes_per_s": round(n / env_wall, 2),
        "with_search_episodes_per_s": round(n / wall, 2),
        "search_share": round(search_total / wall, 3),
        "reset_p50_ms": round(1e3 * statistics.median(resets), 3),
        "reset_p99_ms": round(1e3 * pct(resets, 0.99), 3),
        "step_p50_ms": round(1e3 * statistics.median(steps), 3),
        "step_p99_ms": round(1e3 * pct(steps, 0.99), 3),
        "with_search_step_p99_ms": round(1e3 * pct(steps_raw, 0.99), 3),
        "reset_p50_cpu_ms": round(1e3 * statistics.median(resets_cpu), 3),
        "step_p99_cpu_ms": round(1e3 * pct(steps_cpu, 0.99), 3),
        "resets_cpu_ms": [round(1e3 * x, 4) for x in resets_cpu],
    }


def run_heuristic(env, searcher: TimedSearcher, episodes: int, max_seconds: float) -> float:
    """Episodes/s of the heuristic policy (search excluded)."""
    policy = HeuristicPolicy()
    n, wall, search_total = 0, 0.0, 0.0
    start = time.perf_counter()
    while n < episodes and time.perf_counter() - start < max_seconds:
        t0, s0 = time.perf_counter(), searcher.seconds
        obs, _ = env.reset(seed=n, options={"difficulty": n % MAX_DIFFICULTY_CYCLE})
        done = False
        while not done:
            obs, _, term, trunc, _ = env.step(policy.act(obs))
            done = term or trunc
        wall += time.perf_counter() - t0
        search_total += searcher.seconds - s0
        n += 1
    return round(n / (wall - search_total), 2)


def _touch_pages(catalog: Catalog) -> None:
    """Read every page of the memory-mapped columns and lookups episodes use once, as a
    long-running worker has them resident (a short benchmark would otherwise time first-touch
    page faults)."""
    from ecomrlve.envs.catalog import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS

    arrays = [catalog.numeric(c) for c in NUMERIC_COLUMNS] + [catalog.codes(c)[0] for c in CATEGORICAL_COLUMNS]
    lookups = catalog.lookups() if hasattr(catalog, "lookups") else None
    if lookups is not None:
        arrays += [lookups.leaf_rows, lookups.price_rows, lookups.price_cents, lookups.in_stock_rows,
                   lookups.in_stock_price_rows, lookups.in_stock_price_cents]
        arrays += [p.rows for p in lookups.postings.values()]
    for a in arrays:
        int(np.asarray(a).view(np.uint8)[::4096].sum())


def get_catalog(n: int, seed: int, cache: Path | None) -> tuple[Catalog, dict]:
    """The synthetic catalog of `n` products: generated in memory (its row lookups and
    search index built and timed), or, with `cache`, memory-mapped from
    ``cache/synthetic-<n>-seed<seed>`` (saved there, with the index, on first use)."""
    directory = cache / f"synthetic-{n}-seed{seed}" if cache else None
    if directory is not None and (directory / "manifest.json").is_file():
        t0 = time.perf_counter()
        catalog = Catalog.load(directory)
        catalog.search("warm up the index", None, top_k=5)
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        _touch_pages(catalog)
        return catalog, {"load_s": round(t_load, 3), "page_in_s": round(time.perf_counter() - t0, 3)}
    t0 = time.perf_counter()
    catalog = Catalog.synthetic(n_products=n, seed=seed)
    t_gen = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    lookups = catalog.lookups() if hasattr(catalog, "lookups") else None  # absent before row lookups existed
    t_lookups, c_lookups = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    catalog.search("warm up the index", None, top_k=5)
    t_index = time.perf_counter() - t0
    if directory is not None:
        catalog.save(directory, with_index=True)
    return catalog, {"generate_s": round(t_gen, 3), "lookups_build_s": round(t_lookups, 3),
                     "lookups_build_cpu_s": round(c_lookups, 3), "lookups_mb": round(lookups.nbytes / 2**20, 1) if lookups else None,
                     "index_build_s": round(t_index, 3)}


def run_size(n: int, episodes: int, max_seconds: float, seed: int, heuristic: bool, cache: Path | None,
             env_ids: list[str]) -> dict:
    catalog, setup = get_catalog(n, seed, cache)
    searcher = TimedSearcher(catalog.searcher)
    catalog.set_searcher(searcher)
    envs = {env_id: make_env(env_id, catalog) for env_id in env_ids}
    t0 = time.perf_counter()
    for env in envs.values():  # warm-up: lazily built per-catalog structures, imports
        run_env(env, searcher, 3, max_seconds)
    t_warm = time.perf_counter() - t0
    per_env = {env_id: run_env(env, searcher, episodes, max_seconds) for env_id, env in envs.items()}
    if heuristic:
        for env_id, env in envs.items():
            per_env[env_id]["heuristic_episodes_per_s"] = run_heuristic(env, searcher, episodes, max_seconds)
    every_reset = [x for e in per_env.values() for x in e.pop("resets_cpu_ms")]
    return {
        "n_products": n,
        **setup,
        "warm_up_s": round(t_warm, 3),
        "reset_p50_cpu_ms_all_envs": round(statistics.median(every_reset), 3),
        "envs": per_env,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,2000000")
    ap.add_argument("--episodes", type=int, default=200, help="episodes per env and size (at most)")
    ap.add_argument("--max-seconds", type=float, default=20.0, help="time cap per env and size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--heuristic", action="store_true", help="also time the heuristic policy")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--envs", default=",".join(ENV_IDS), help="comma-separated env ids (default: all)")
    ap.add_argument("--catalog-cache", type=Path, default=None,
                    help="directory to keep generated catalogs (with lookups and index) in and memory-map them from")
    args = ap.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        ap.error(f"--sizes: expected comma-separated integers, got {args.sizes!r}")
    if any(s < 1000 for s in sizes):
        ap.error("--sizes: every size must be at least 1000 products")
    env_ids = args.envs.split(",")
    unknown = [e for e in env_ids if e not in ENV_IDS]
    if unknown:
        ap.error(f"--envs: unknown env id(s) {', '.join(unknown)}; known: {', '.join(ENV_IDS)}")
    results = []
    for n in sizes:
        results.append(run_size(n, args.episodes, args.max_seconds, args.seed, args.heuristic, args.catalog_cache,
                                env_ids))
        r = results[-1]
        setup = ", ".join(f"{k} {v}" for k, v in r.items() if k.endswith(("_s", "_mb")))
        print(f"{n:>9,} products ({setup}); two-step policy, BM25 search time excluded; "
              f"reset p50 over all envs {r['reset_p50_cpu_ms_all_envs']} ms CPU:", flush=True)
        for env_id, e in r["envs"].items():
            extra = f", heuristic {e['heuristic_episodes_per_s']:8.1f}/s" if "heuristic_episodes_per_s" in e else ""
            print(f"  {env_id:<9} {e['episodes_per_s']:9.1f} episodes/s, {e['episodes_per_cpu_s']:9.1f} per CPU-s ({e['episodes']} episodes, "
                  f"with search {e['with_search_episodes_per_s']:8.1f}/s), reset p50 {e['reset_p50_ms']:7.3f} ms "
                  f"({e['reset_p50_cpu_ms']:.3f} CPU), step p99 {e['step_p99_ms']:7.3f} ms "
                  f"({e['step_p99_cpu_ms']:.3f} CPU){extra}", flush=True)
        gc.collect()
    small, large = results[0], results[-1]
    summary = {}
    for env_id in env_ids:
        s, g = small["envs"][env_id], large["envs"][env_id]
        ratio = s["episodes_per_cpu_s"] / g["episodes_per_cpu_s"]
        summary[env_id] = {
            "episodes_per_cpu_s_small_over_large": round(ratio, 3),
            "episodes_per_s_small_over_large": round(s["episodes_per_s"] / g["episodes_per_s"], 3),
            "within_2x": ratio <= SIZE_RATIO_LIMIT,
            "reset_p50_ok": g["reset_p50_cpu_ms"] <= RESET_P50_LIMIT_MS,
            "step_p99_ok": g["step_p99_cpu_ms"] <= STEP_P99_LIMIT_MS,
        }
    print(f"{small['n_products']:,} vs {large['n_products']:,} products (episodes per CPU-second ratio <= {SIZE_RATIO_LIMIT}; "
          f"at {large['n_products']:,}: reset p50 <= {RESET_P50_LIMIT_MS} ms, step p99 <= {STEP_P99_LIMIT_MS} ms, CPU time):")
    for env_id, s in summary.items():
        print(f"  {env_id:<9} ratio {s['episodes_per_cpu_s_small_over_large']:7.2f} (wall {s['episodes_per_s_small_over_large']:5.2f}) "
              f"{'ok' if s['within_2x'] else 'FAIL'}; reset p50 {'ok' if s['reset_p50_ok'] else 'FAIL'}; "
              f"step p99 {'ok' if s['step_p99_ok'] else 'FAIL'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"policy": "two-step (one tool call, then an answer); BM25 search excluded",
                                    "results": results, "summary": summary}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
