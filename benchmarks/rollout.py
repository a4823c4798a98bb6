"""Rollout benchmark: the Ray actor system against a plain in-process loop.

    unshare -n bash -c 'ip link set lo up && python3 benchmarks/rollout.py'   # loopback only
    python3 benchmarks/rollout.py --episodes 400 --collection C1 --catalog-size 20000

Measures, in one run (the machines are noisy, so only ratios within a run mean anything):

1. episodes/s of the in-process loop (one thread, sequential episodes) and of ``ecomrlve
   run``'s driver with W=1 and W=2 env workers (S shards, shopper deployment, curriculum);
2. per-turn latency of one episode at a time: in-process vs the Ray path (W=1, one episode
   in flight, so every turn pays its search fan-out and shopper round trips): ms and ratio;
3. search latency: the shard router (S shards, sequential calls and one batched fan-out)
   against a single in-process index, on the same queries.

Prints a table and writes ``benchmarks/results/rollout.json``. Every mode runs the same
tasks: the same curriculum seed, with ``tau_num`` set out of reach so the window stays at
d = 0 and the Ray runs lease exactly the task list the in-process loop plays.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_REPORT_URL", "http://127.0.0.1:9/")

QUERIES = [
    ("usb-c charger", None), ("black t-shirt", {"price_max": 30}), ("wireless headphones", {"rating_min": 4}),
    ("stainless steel water bottle", None), ("", {"in_stock": True}), ("organic coffee", {"ship_days_max": 3}),
    ("running shoes", {"price_min": 20, "price_max": 120}), ("lamp", None), ("kids toy", {"in_stock": True}),
    ("face cream", None), ("", None), ("laptop stand aluminium", None),
]


def _tasks(collection: str, n: int, seed: int):
    from ecomrlve.envs import resolve_envs
    from ecomrlve.scheduler import Curriculum, CurriculumConfig

    cur = Curriculum(resolve_envs(collection), CurriculumConfig(first_seed=seed * 1_000_000), seed=seed)
    return [t.as_dict() for t in cur.lease(n)]


def bench_in_process(catalog, collection: str, n: int, policy: str, seed: int) -> dict:
    from ecomrlve.actors.env_worker import LocalPolicyClient
    from ecomrlve.actors.rollout import Episode, play

    client = LocalPolicyClient(policy)
    turns = 0
    t0 = time.perf_counter()
    for task in _tasks(collection, n, seed):
        episode = Episode(task, catalog=catalog)
        play([episode], lambda e: client.episode(e.env))
        turns += episode.turns
    wall = time.perf_counter() - t0
    return {"episodes": n, "turns": turns, "wall_s": wall, "episodes_per_s": n / wall, "ms_per_turn": wall / turns * 1e3}


def bench_ray(args, workers: int, episodes: int, max_concurrent: int, batch: int, tag: str) -> dict:
    from ecomrlve.actors.driver import RunConfig, run

    cfg = RunConfig(collection=args.collection, episodes=episodes, workers=workers, shards=args.shards,
                    policy=args.policy, catalog_size=args.catalog_size, seed=args.seed,
                    out=str(Path(args.tmp) / f"{tag}-{int(time.time())}"), batch_size=batch,
                    max_concurrent=max_concurrent, shopper=args.shopper, curriculum={"tau_num": 10**9})
    res = run(cfg)
    turns = sum(s["turns"] for s in res.summaries)
    return {"workers": workers, "episodes": res.episodes, "turns": turns, "wall_s": res.wall_s,
            "episodes_per_s": res.episodes_per_s, "ms_per_turn": res.wall_s / max(turns, 1) * 1e3,
            "max_concurrent": max_concurrent, "errors": res.errors}


def bench_search(catalog, shards: int, repeats: int) -> dict:
    import ray

    from ecomrlve.catalog_service.shards import CatalogSource, start_shards

    src = CatalogSource.from_catalog(catalog)
    router = start_shards(src, shards, num_cpus=0.1)
    try:
        qs = [(q, f, 10) for q, f in QUERIES]
        for q, f, k in qs:  # warm up both paths
            catalog.search(q, f, k)
            router.search(q, f, k)

        def timed(fn):
            samples = []
            for _ in range(repeats):
                for q, f, k in qs:
                    t0 = time.perf_counter()
                    fn(q, f, k)
                    samples.append((time.perf_counter() - t0) * 1e3)
            return samples

        local = timed(catalog.search)
        routed = timed(router.search)
        t0 = time.perf_counter()
        for _ in range(repeats):
            router.search_many(qs)
        batched_ms = (time.perf_counter() - t0) * 1e3 / (repeats * len(qs))
        return {
            "shards": shards, "queries": len(local),
            "in_process_ms_p50": statistics.median(local), "in_process_ms_mean": statistics.fmean(local),
            "router_ms_p50": statistics.median(routed), "router_ms_mean": statistics.fmean(routed),
            "router_batched_ms_per_query": batched_ms,
            "ratio_router_vs_local_p50": statistics.median(routed) / statistics.median(local),
            "ratio_batched_vs_local_mean": batched_ms / statistics.fmean(local),
        }
    finally:
        for s in router.shards:
            ray.kill(s, no_restart=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--collection", default="C1")
    p.add_argument("--policy", default="heuristic", choices=("heuristic", "oracle"))
    p.add_argument("--episodes", type=int, default=600, help="episodes per throughput mode (default 600)")
    p.add_argument("--latency-episodes", type=int, default=40, help="episodes for the one-at-a-time mode")
    p.add_argument("--catalog-size", type=int, default=20_000)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--shopper", default="serve", choices=("serve", "local", "none"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--search-repeats", type=int, default=20)
    p.add_argument("--num-cpus", type=int, default=None)
    p.add_argument("--tmp", default="/tmp/ecomrlve-bench")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rollout.json"))
    args = p.parse_args(argv)

    from ecomrlve.actors.ray_session import init_ray
    from ecomrlve.catalog_service import Catalog

    catalog = Catalog.synthetic(n_products=args.catalog_size, seed=0)
    catalog.search("warm up")  # build the index outside the timed loops

    bench_in_process(catalog, args.collection, 50, args.policy, args.seed + 1)  # warm-up (imports, caches, JIT)
    inproc = bench_in_process(catalog, args.collection, args.episodes, args.policy, args.seed)
    inproc_lat = bench_in_process(catalog, args.collection, args.latency_episodes, args.policy, args.seed)
    init_ray(num_cpus=args.num_cpus, include_dashboard=False)
    w1 = bench_ray(args, 1, args.episodes, 32, 4, "w1")
    w2 = bench_ray(args, 2, args.episodes, 32, 4, "w2")
    lat = bench_ray(args, 1, args.latency_episodes, 1, 1, "latency")
    search = bench_search(catalog, args.shards, args.search_repeats)

    import ray

    result = {
        "machine": {"cpus": os.cpu_count(), "ray_cpus": ray.cluster_resources().get("CPU"),
                    "python": platform.python_version(), "ray": ray.__version__, "platform": platform.platform()},
        "config": vars(args),
        "in_process": inproc,
        "ray_w1": w1,
        "ray_w2": w2,
        "ratios": {
            "w2_over_w1_episodes_per_s": w2["episodes_per_s"] / w1["episodes_per_s"],
            "w1_over_in_process_episodes_per_s": w1["episodes_per_s"] / inproc["episodes_per_s"],
            "w2_over_in_process_episodes_per_s": w2["episodes_per_s"] / inproc["episodes_per_s"],
        },
        "per_turn": {
            "in_process_ms": inproc_lat["ms_per_turn"],
            "ray_ms": lat["ms_per_turn"],
            "overhead_ms": lat["ms_per_turn"] - inproc_lat["ms_per_turn"],
            "ratio": lat["ms_per_turn"] / inproc_lat["ms_per_turn"],
            "episodes": args.latency_episodes,
        },
        "search": search,
    }
    ray.shutdown()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    r = result
    print(f"\nrollout benchmark ({args.collection}, {args.policy}, catalog {args.catalog_size:,}, S={args.shards}, "
          f"shopper={args.shopper}, {r['machine']['cpus']} CPUs)")
    print(f"  in-process loop      {inproc['episodes_per_s']:8.1f} episodes/s   {inproc['ms_per_turn']:.2f} ms/turn")
    print(f"  Ray W=1              {w1['episodes_per_s']:8.1f} episodes/s   x{r['ratios']['w1_over_in_process_episodes_per_s']:.2f} of in-process")
    print(f"  Ray W=2              {w2['episodes_per_s']:8.1f} episodes/s   x{r['ratios']['w2_over_in_process_episodes_per_s']:.2f} of in-process, "
          f"x{r['ratios']['w2_over_w1_episodes_per_s']:.2f} of W=1")
    pt = r["per_turn"]
    print(f"  per turn, 1 episode in flight: in-process {pt['in_process_ms']:.2f} ms, Ray {pt['ray_ms']:.2f} ms "
          f"(+{pt['overhead_ms']:.2f} ms, x{pt['ratio']:.1f})")
    s = r["search"]
    print(f"  search p50: in-process {s['in_process_ms_p50']:.3f} ms, router S={s['shards']} {s['router_ms_p50']:.3f} ms "
          f"(x{s['ratio_router_vs_local_p50']:.1f}); batched {s['router_batched_ms_per_query']:.3f} ms/query "
          f"(x{s['ratio_batched_vs_local_mean']:.2f} of in-process mean)")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
