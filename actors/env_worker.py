"""`EnvWorker`: an async Ray actor running many episodes at once.

Each task ``{env_id, difficulty, seed, task_id}`` becomes one episode: ``make_env(env_id,
catalog)`` over the worker's catalog view (rows from a zero-copy local catalog, search from
the shard router), the policy acts, every new shopper message goes through the shopper
service, and the finished episode becomes a trajectory record.

Concurrency: every episode is an asyncio task (bounded by ``max_concurrent``). The
environment code is synchronous, so each turn (policy act + ``env.step``) runs in a thread
pool; while one episode's thread waits on a shard search or a shopper reply (both release
the GIL) the others go on, and the router batches their searches. A remote policy engine is
awaited on the event loop.

Policies: `PolicyClient` is the seam. `LocalPolicyClient` runs ``oracle`` / ``heuristic`` in
the worker; `ecomrlve.actors.policy_engine.EngineClient` sends them to a `PolicyEngine` (an LLM) and, for
training, turns each finished episode's token record into a learner `Trajectory`.

Training tasks carry ``rollout`` (0..G-1 within a group) and ``episode_id`` (``task_id * 1000
+ rollout``), optionally ``axes`` (axis overrides passed to ``reset``). `run_rollouts`
returns the learner inputs as a third object; only rollout 0 of a group reports the task id
to the curriculum (which ignores a task id reported twice, yet counts every outcome).

An episode that raises (an environment bug, a policy crash) never takes the worker down: it
is recorded with ``termination_reason = "error: ..."`` and ``is_correct = False``.
"""

from __future__ import annotations

import asyncio
import os
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import ray

from .rollout import Episode, outcomes_of, play_async, summary_of

POLICIES = ("oracle", "heuristic")

__all__ = ["EnvWorker", "PolicyClient", "LocalPolicyClient", "POLICIES"]


# --------------------------------------------------------------------------- policy seam


class PolicyClient(Protocol):
    name: str

    def episode(self, env) -> Any:
        """A per-episode policy object with `act(obs)`: a coroutine function for a remote
        policy (awaited on the event loop), else a cheap synchronous call (run in the thread
        pool together with the env step)."""

    # optional: ``async finish(episode, task, record) -> (learner item | None, summary fields)``,
    # called once per finished episode (also after an error) by `EnvWorker.run_rollouts`


class LocalPolicyClient:
    """The in-process policies: ``oracle`` (privileged) and ``heuristic``."""

    def __init__(self, name: str):
        if name not in POLICIES:
            raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}")
        self.name = name

    def episode(self, env):
        if self.name == "oracle":
            from ecomrlve.policies.oracle import OraclePolicy

            return OraclePolicy(env)
        from ecomrlve.policies.heuristic import HeuristicPolicy

        pol = HeuristicPolicy()
        pol.reset()
        return pol


def make_policy_client(policy: str | Any) -> PolicyClient:
    if isinstance(policy, str):
        return LocalPolicyClient(policy)
    return policy


# --------------------------------------------------------------------------- the actor


class EnvWorkerImpl:
    def __init__(self, worker_id: int, source, router=None, policy: str | Any = "oracle", shopper=None,
                 scheduler=None, max_concurrent: int = 32, threads: int = 8):
        from ecomrlve.catalog_service.shards import RoutedCatalog

        self.worker_id = worker_id
        self.catalog = source.catalog()
        self.view = RoutedCatalog(self.catalog, router) if router is not None else self.catalog
        if router is not None:
            from .metrics import get_metrics

            router.observer = lambda ms, shards, batch: get_metrics().search(ms, shards, batch)
        self.policy = make_policy_client(policy)
        self.shopper = shopper  # a shopper client (`for_episode(episode_id)` is a phraser), or None
        self.scheduler = scheduler
        self.max_concurrent = max(1, int(max_concurrent))
        # An episode's step holds a pool thread while the Serve shopper phrases its reply, so with
        # a shopper every concurrent episode gets a thread: fewer would cap the shopper's batches.
        n_threads = max(1, int(threads), self.max_concurrent if shopper is not None else 1)
        self.pool = ThreadPoolExecutor(n_threads, thread_name_prefix=f"env{worker_id}")
        self._sem: asyncio.Semaphore | None = None
        self.active = 0
        self.finished = 0
        self.started_at = time.time()

    # -- public methods -----------------------------------------------------------------
    @ray.method(num_returns=2)
    async def run_tasks(self, tasks: list[dict]):
        """Run `tasks` concurrently. Returns (small summaries, full trajectories) as two
        objects, so the caller can route the trajectories by reference."""
        done = await asyncio.gather(*(self._episode(t) for t in tasks))
        records = [rec for rec, _, _ in done]
        await self._report(tasks, records)
        return [{**summary_of(r), **timing} for r, timing, _ in done], records

    @ray.method(num_returns=3)
    async def run_rollouts(self, tasks: list[dict]):
        """`run_tasks` for training: (summaries, trajectory records, learner items). The
        policy client's ``finish`` makes each episode's learner item (None when it has
        nothing to learn from, e.g. an episode that raised) and adds fields to its summary
        (reward, group, weight version)."""
        finish = getattr(self.policy, "finish", None)
        if finish is None:
            raise TypeError(f"policy client {self.policy.name!r} has no finish(): it cannot feed a learner")
        done = await asyncio.gather(*(self._episode(t, finish) for t in tasks))
        records = [rec for rec, _, _ in done]
        await self._report(tasks, records)
        summaries = [{**summary_of(r), **timing, **extra[1]} for r, timing, extra in done]
        return summaries, records, [extra[0] for _, _, extra in done]

    async def ping(self) -> dict:
        return {"worker_id": self.worker_id, "pid": os.getpid(), "active": self.active, "finished": self.finished}

    # -- internals ----------------------------------------------------------------------
    async def _report(self, tasks: list[dict], records: list[dict]) -> None:
        if self.scheduler is not None:
            await self.scheduler.report.remote(outcomes_of(tasks, records))

    def _semaphore(self) -> asyncio.Semaphore:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.max_concurrent)
        return self._sem

    async def _call(self, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: fn(*args, **kwargs))

    async def _episode(self, task: dict, finish=None) -> tuple[dict, dict, Any]:
        """Play `task`; returns (trajectory record, timing in ms, ``finish``'s result or None).

        Timing splits the episode's wall time into the policy (awaiting the LLM, queueing
        in its micro-batcher included), the environment (reset + step in the thread pool,
        shard searches included) and the shopper service; the rest is the event loop and Ray."""
        from .metrics import get_metrics

        async with self._semaphore():
            self.active += 1
            metrics = get_metrics()
            metrics.queue_depth(f"worker{self.worker_id}_active", self.active)
            t0 = time.perf_counter()
            phraser = self.shopper.for_episode(task["task_id"]) if self.shopper is not None else None
            episode = Episode(task, catalog=self.view, phraser=phraser)
            await play_async(episode, lambda e: self.policy.episode(e.env), self._call)
            rec = episode.record(self.policy.name, self.worker_id, wall_ms=(time.perf_counter() - t0) * 1e3)
            extra = None
            if finish is not None:
                try:
                    extra = await finish(episode.actor, task, rec)
                except Exception as exc:  # noqa: BLE001 - the record is kept; nothing to learn from
                    traceback.print_exc()
                    extra = (None, {"finish_error": f"{type(exc).__name__}: {exc}"})
            self.active -= 1
            self.finished += 1
            metrics.queue_depth(f"worker{self.worker_id}_active", self.active)
            metrics.episode(rec["env_id"], rec["policy"], rec["r_total"], rec["is_correct"], rec["difficulty"],
                            rec["turns"])
            return rec, dict(episode.timing), extra


EnvWorker = ray.remote(max_restarts=-1, max_task_retries=0)(EnvWorkerImpl)
