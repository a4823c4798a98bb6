"""``ecomrlve eval --ray`` / ``--address ADDR``: the evaluation's task list played on the actor
system of ``ecomrlve run`` (local Ray, or a cluster).

`ecomrlve.actors.system.ActorSystem` builds the catalog shards, the env workers and a
curriculum scheduler in fixed-task-list mode (it serves exactly the evaluation's tasks and
adapts nothing); `ecomrlve.actors.dispatch.Dispatcher` leases them, plays each task's trials
on the workers (retrying a dead worker's episodes) and collects the records. The rows are
those of the in-process path (`ecomrlve.actors.evaluate`): one per (task, trial), episode id
``task_index * trials + trial``; a deterministic policy (heuristic, oracle) plays trial 0 and
its row is copied to the other trials unless ``rerun_deterministic``. The shopper speaks the
environment's own template text (no phrasing service), as in-process.

Local policies only (heuristic, oracle): an LLM policy is evaluated in-process.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any, Callable, Sequence

__all__ = ["play_on_actors", "ACTOR_POLICIES"]

ACTOR_POLICIES = ("heuristic", "oracle")


def play_on_actors(cfg: Any, jobs: Sequence[dict], progress: Callable[[int, int], None] | None = None,
                   log: Callable[[str], None] = lambda s: None) -> list[dict]:
    """Play the cells `jobs` (``env_id``, ``difficulty``, ``task_base``; ``cfg.seeds`` tasks
    each, ``cfg.trials`` trials per task) of the evaluation config `cfg` on actors; returns
    the evaluation rows (unsorted)."""
    import ray

    from .ray_session import init_ray
    from .dispatch import Dispatcher
    from .env_worker import LocalPolicyClient
    from .system import ActorSystem, SystemSpec

    if cfg.policy not in ACTOR_POLICIES:
        raise ValueError(f"policy: {cfg.policy!r} cannot run on actors (only {', '.join(ACTOR_POLICIES)}); "
                         "drop --ray/--address to evaluate it in-process")
    n = int(cfg.trials)
    replicate = not cfg.rerun_deterministic  # heuristic and oracle are deterministic
    plays = 1 if replicate else n
    tasks = [{"env_id": job["env_id"], "difficulty": int(job["difficulty"]), "seed": cfg.seed_base + i,
              "task_id": job["task_base"] + i} for job in jobs for i in range(cfg.seeds)]
    init_ray(address=cfg.address)
    spec = SystemSpec(env_ids=list(cfg.env_ids), workers=cfg.workers, shards=cfg.shards,
                      catalog_size=cfg.catalog_size, catalog_dir=cfg.catalog_dir, catalog_seed=cfg.catalog_seed,
                      shopper="none", tasks=tasks)
    system = ActorSystem(spec)
    with tempfile.TemporaryDirectory(prefix="ecomrlve-eval-") as tmp:
        try:
            system.start(tmp, LocalPolicyClient(cfg.policy), log)

            def lease(want: int) -> list[dict]:
                leased = ray.get(system.scheduler.lease.remote(max(1, want // plays)))
                return [{**t, "rollout": trial, "episode_id": int(t["task_id"]) * n + trial}
                        for t in leased for trial in range(plays)]

            disp = Dispatcher(system, batch_size=max(1, min(8, plays * 4)), max_concurrent=32, lease=lease, log=log)
            expected = len(tasks) * plays
            last = 0.0
            while len(disp.done) < expected or disp.writes:
                disp.dispatch()
                if not disp.busy:
                    raise RuntimeError(f"{expected - len(disp.done)} evaluation episodes were never dispatched")
                disp.poll()
                if progress is not None and time.perf_counter() - last > 0.5:
                    last = time.perf_counter()
                    progress(len(disp.done), expected)
            calls = {id(c): c for c in disp.calls.values()}
            records = [r for refs in ray.get([c.records for c in calls.values()]) for r in refs]
        finally:
            system.shutdown()
    rows = []
    for rec in records:
        task_index, trial = divmod(int(rec["episode_id"]), n)
        row = {**rec, "worker": "eval", "policy": cfg.policy, "trial": trial, "task_index": task_index,
               "policy_seed": trial, "replicated": False}
        rows.append(row)
        if replicate:
            rows += [{**row, "episode_id": task_index * n + t, "trial": t, "policy_seed": t, "replicated": True}
                     for t in range(1, n)]
    if progress is not None:
        progress(expected, expected)
    return rows
