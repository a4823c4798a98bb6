"""In-process episode throughput with the heuristic policy at several catalog sizes.

For each catalog size: episodes/s over all eight environments, reset and step p50/p99
latency, and the reset-latency ratio between the largest and the smallest catalog (reset
must be O(1) in catalog size: the ratio should stay under 2). Catalog generation and index
building are timed separately and excluded from the episode figures.

    python benchmarks/episodes.py --sizes 10000,100000,2000000 --episodes 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from catalog_service import Catalog
from envs import ENV_IDS, make_env
from policies import HeuristicPolicy

OUT = Path(__file__).resolve().parent / "results" / "episodes.json"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run_size(n: int, episodes: int, seed: int) -> dict:
    t0 = time.perf_counter()
    catalog = Catalog.synthetic(n_products=n, seed=seed)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    catalog.search("warm up the index", None, top_k=5)
    t_index = time.perf_counter() - t0
    envs = {env_id: make_env(env_id, catalog) for env_id in ENV_IDS}
    policy = HeuristicPolicy()
    # warm-up: one episode per env (numba kernels, caches, per-leaf row lists)
    for env in envs.values():
        obs, _ = env.reset(seed=10**6)
        done = False
        while not done:
            obs, _, term, trunc, _ = env.step(policy.act(obs))
            done = term or trunc
    resets, steps, turns = [], [], 0
    per_env: dict[str, list[bool]] = {e: [] for e in ENV_IDS}
    t_start = time.perf_counter()
    for i in range(episodes):
        env_id = ENV_IDS[i % len(ENV_IDS)]
        env = envs[env_id]
        t = time.perf_counter()
        obs, info = env.reset(seed=i, options={"difficulty": (i // len(ENV_IDS)) % 13})
        resets.append(time.perf_counter() - t)
        done = False
        while not done:
            action = policy.act(obs)
            t = time.perf_counter()
            obs, _, term, trunc, info = env.step(action)
            steps.append(time.perf_counter() - t)
            turns += 1
            done = term or trunc
        per_env[env_id].append(info["reward"]["is_correct"])
    wall = time.perf_counter() - t_start
    return {
        "n_products": n,
        "generate_s": round(t_gen, 3),
        "index_build_s": round(t_index, 3),
        "episodes": episodes,
        "episodes_per_s": round(episodes / wall, 2),
        "turns_per_s": round(turns / wall, 1),
        "reset_p50_ms": round(1e3 * statistics.median(resets), 3),
        "reset_p99_ms": round(1e3 * pct(resets, 0.99), 3),
        "step_p50_ms": round(1e3 * statistics.median(steps), 3),
        "step_p99_ms": round(1e3 * pct(steps, 0.99), 3),
        "heuristic_success": {e: round(sum(v) / len(v), 3) for e, v in per_env.items() if v},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,2000000")
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = [run_size(n, args.episodes, args.seed) for n in sizes]
    for r in results:
        print(f"{r['n_products']:>9,} products: {r['episodes_per_s']:7.1f} episodes/s, "
              f"reset p50 {r['reset_p50_ms']:.3f} ms, step p50 {r['step_p50_ms']:.3f} ms "
              f"(generate {r['generate_s']} s, index {r['index_build_s']} s)")
    small, large = results[0], results[-1]
    ratios = {
        "reset_p50_large_over_small": round(large["reset_p50_ms"] / small["reset_p50_ms"], 3),
        "step_p50_large_over_small": round(large["step_p50_ms"] / small["step_p50_ms"], 3),
        "episodes_per_s_small_over_large": round(small["episodes_per_s"] / large["episodes_per_s"], 3),
    }
    print(f"ratios ({large['n_products']:,} vs {small['n_products']:,}): {ratios}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"results": results, "ratios": ratios}, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
