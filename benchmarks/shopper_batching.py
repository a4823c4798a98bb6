"""Throughput of the Serve shopper with a slow (LLM-like) backend, batched vs one call at a time.

The backend (`SleepBackend`) sleeps ``--delay-ms`` (default 50 ms) per call, whatever the
number of requests in the call: a stand-in for one LLM generate over a batch. Each
measurement runs ``--concurrency`` episodes at once (default 32), twice:

- one at a time: ``max_batch_size=1``, every request is its own backend call;
- batched: ``@serve.batch`` with ``max_batch_size`` = the concurrency.

Two workloads:

- ``shopper-bound`` (the criterion): each episode is ``--turns`` shopper messages in a row
  (the conversation of an episode whose agent and environment cost nothing next to the
  LLM shopper), sent by 32 concurrent callers through the deployment's handle;
- ``env episodes``: real episodes (heuristic policy, the eight environments at
  difficulties 0..3) in an env worker in this process (catalog in process) whose every
  shopper message goes through the handle. Heuristic episodes send only ~1.6 shopper
  messages each and the environments share this machine's cores with Ray, so their ratio is
  capped by the environments' own speed: the template backend (no sleep) measures that
  ceiling.

It prints episodes/s, shopper requests/s, backend calls and batch sizes of each, and the
ratios measured in this run, and writes benchmarks/results/shopper_batching.json.

    PYTHONPATH=$PWD python benchmarks/shopper_batching.py            # inside a loopback-only namespace
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ecomrlve.actors.shopper_service import BATCH_WAIT_TIMEOUT_S

OUT = Path(__file__).resolve().parent / "results" / "shopper_batching.json"


class SleepBackend:
    """A fake LLM shopper backend: each call (one request or a batch) blocks ``delay_s``
    seconds, then returns the template texts unchanged."""

    name = "sleep"

    def __init__(self, delay_s: float = 0.05, **_):
        self.delay_s = float(delay_s)

    def phrase(self, request: dict) -> str:
        return self.phrase_batch([request])[0]

    def phrase_batch(self, requests: list[dict]) -> list[str]:
        time.sleep(self.delay_s)
        return [r["text"] for r in requests]


def tasks_for(n: int, first: int = 0) -> list[dict]:
    from ecomrlve.envs import ENV_IDS

    return [{"env_id": ENV_IDS[i % len(ENV_IDS)], "difficulty": (i // len(ENV_IDS)) % 4, "seed": 1000 + i,
             "task_id": first + i} for i in range(n)]


async def shopper_episodes(client, episodes: int, concurrency: int, turns: int) -> list[dict]:
    """`episodes` conversations of `turns` shopper messages each, `concurrency` at a time.
    `ShopperClient.phrase` blocks its caller (an env worker calls it from the thread that
    steps the env), so each concurrent conversation gets a thread, as in the env worker."""
    sem = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="shopper-bound")

    async def one(e: int) -> dict:
        async with sem:
            for t in range(turns):
                text = f"episode {e} turn {t}: I need a usb-c charger under $30."
                if await loop.run_in_executor(pool, client.phrase, {"text": text, "episode_id": e, "turn": t}) != text:
                    return {"termination_reason": "error: wrong text"}
            return {"termination_reason": "done"}

    try:
        return list(await asyncio.gather(*(one(e) for e in range(episodes))))
    finally:
        pool.shutdown(wait=False)


def measure(workload: str, source, episodes: int, concurrency: int, max_batch_size: int, delay_s: float | None,
            turns: int = 8, batch_wait_s: float = BATCH_WAIT_TIMEOUT_S) -> dict:
    from ecomrlve.actors.env_worker import EnvWorkerImpl
    from ecomrlve.actors.shopper_service import ShopperClient, deploy_shopper, shutdown_shopper

    backend = "template" if delay_s is None else "benchmarks.shopper_batching:SleepBackend"
    handle = deploy_shopper(backend, None if delay_s is None else {"delay_s": delay_s},
                            max_ongoing_requests=2 * concurrency, max_batch_size=max_batch_size,
                            batch_wait_timeout_s=batch_wait_s)
    client = ShopperClient(handle, "sleep")
    try:
        if workload == "env":
            worker = EnvWorkerImpl(0, source, None, "heuristic", client, None, max_concurrent=concurrency, threads=8)

            def play(n, first=0):
                return asyncio.run(worker.run_tasks(tasks_for(n, first)))[0]
        else:
            def play(n, first=0):
                return asyncio.run(shopper_episodes(client, n, concurrency, turns))
        play(concurrency, first=10**6)  # warm-up: imports, numba, the handle's router
        before = handle.stats.remote().result()
        t0 = time.perf_counter()
        summaries = play(episodes)
        wall = time.perf_counter() - t0
        after = handle.stats.remote().result()
    finally:
        shutdown_shopper()
    sizes = {int(k): v - before["batch_sizes"].get(k, 0) for k, v in after["batch_sizes"].items()}
    sizes = {k: v for k, v in sorted(sizes.items()) if v}
    requests = after["requests"] - before["requests"]
    calls = after["backend_calls"] - before["backend_calls"]
    errors = sum(1 for s in summaries if s["termination_reason"].startswith("error"))
    return {"workload": workload, "backend": backend, "max_batch_size": max_batch_size, "episodes": episodes, "errors": errors, "wall_s": round(wall, 3),
            "episodes_per_s": round(episodes / wall, 2), "shopper_requests": requests,
            "requests_per_s": round(requests / wall, 1), "backend_calls": calls,
            "mean_batch": round(requests / max(calls, 1), 2), "batch_sizes": sizes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, default=32, help="episodes at once (default 32)")
    ap.add_argument("--delay-ms", type=float, default=50.0, help="backend time per call (default 50 ms)")
    ap.add_argument("--turns", type=int, default=8, help="shopper messages per shopper-bound episode (default 8)")
    ap.add_argument("--episodes", type=int, default=128, help="episodes of a batched measurement")
    ap.add_argument("--serial-episodes", type=int, default=32, help="episodes of a one-at-a-time measurement")
    ap.add_argument("--catalog-size", type=int, default=10_000)
    ap.add_argument("--batch-wait-ms", type=float, default=BATCH_WAIT_TIMEOUT_S * 1e3,
                    help=f"batch_wait_timeout_s of the batched runs, in ms (default {BATCH_WAIT_TIMEOUT_S * 1e3:g})")
    args = ap.parse_args()

    from ecomrlve.actors.ray_session import init_ray
    from ecomrlve.catalog_service import Catalog
    from ecomrlve.catalog_service.shards import CatalogSource

    init_ray(num_cpus=4, include_dashboard=False)
    import ray

    source = CatalogSource.in_process(Catalog.synthetic(n_products=args.catalog_size, seed=0))
    delay, c, wait = args.delay_ms / 1e3, args.concurrency, args.batch_wait_ms / 1e3
    runs: dict = {}
    try:
        for workload in ("shopper", "env"):
            runs[workload] = {
                "one_at_a_time": measure(workload, source, args.serial_episodes, c, 1, delay, args.turns),
                "batched": measure(workload, source, args.episodes, c, c, delay, args.turns, wait),
            }
        runs["env"]["template_ceiling"] = measure("env", source, args.episodes, c, c, None)
    finally:
        ray.shutdown()
    ratios = {w: round(r["batched"]["episodes_per_s"] / r["one_at_a_time"]["episodes_per_s"], 2)
              for w, r in runs.items()}
    ratios["env_ceiling"] = round(runs["env"]["template_ceiling"]["episodes_per_s"]
                                  / runs["env"]["one_at_a_time"]["episodes_per_s"], 2)
    for w, label in (("shopper", f"shopper-bound ({args.turns} messages/episode)"), ("env", "env episodes")):
        print(label)
        for k, r in runs[w].items():
            print(f"  {k:>16}: {r['episodes_per_s']:7.2f} episodes/s, {r['requests_per_s']:7.1f} shopper requests/s, "
                  f"{r['backend_calls']} backend calls for {r['shopper_requests']} requests "
                  f"(mean batch {r['mean_batch']}), {r['errors']} errors")
    print(f"batched / one at a time, {c} concurrent episodes, {args.delay_ms:g} ms backend: "
          f"{ratios['shopper']:.1f}x shopper-bound, {ratios['env']:.1f}x env episodes "
          f"(template-backend ceiling of env episodes: {ratios['env_ceiling']:.1f}x)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"concurrency": c, "delay_ms": args.delay_ms, "turns": args.turns,
                               "batch_wait_ms": args.batch_wait_ms,
                               "catalog_size": args.catalog_size, "runs": runs, "ratios": ratios}, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
