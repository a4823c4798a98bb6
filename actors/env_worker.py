"""`EnvWorker`: an async Ray actor running many episodes at once.

Each task ``{env_id, difficulty, seed, task_id}`` becomes one episode: ``make_env(env_id,
catalog)`` over the worker's catalog view (rows from a zero-copy local catalog, search from
the shard router), the policy acts, every new shopper message goes through the shopper
service, and the finished episode becomes a trajectory record.

Concurrency: every episode is an asyncio task (bounded by ``max_concurrent``). The
environment code is synchronous, so each turn (policy act + ``env.step``) runs in a thread
pool; while one episode's thread waits on a shard search (which releases the GIL) the
others go on, and the router batches their searches. Remote calls that are naturally async
(the shopper deployment, a remote policy engine) are awaited on the event loop.

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
import json
import os
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import ray

from ecomrlve.envs import make_env

MAX_STEPS = 256  # safety net; environments end far earlier (T_max)
POLICIES = ("oracle", "heuristic")

__all__ = ["EnvWorker", "PolicyClient", "LocalPolicyClient", "run_episode_sync",
           "trajectory_record", "outcomes_of", "POLICIES"]


# --------------------------------------------------------------------------- policy seam


class PolicyClient(Protocol):
    name: str
    local: bool  # True: `episode(env).act(obs)` is a cheap synchronous call

    def episode(self, env) -> Any:
        """A per-episode policy object with `act(obs)` (sync when `local`, else async)."""

    # optional: ``async finish(episode, task, record) -> (learner item | None, summary fields)``,
    # called once per finished episode (also after an error) by `EnvWorker.run_rollouts`


class LocalPolicyClient:
    """The in-process policies: ``oracle`` (privileged) and ``heuristic``."""

    local = True

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


# --------------------------------------------------------------------------- records


def _json(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


def trajectory_record(task: dict, env, actions: list, policy: str, worker: int | str, wall_ms: float,
                      error: str | None = None) -> dict:
    info = env.reward_info.as_dict() if getattr(env, "reward_info", None) is not None else {}
    return {
        "episode_id": int(task.get("episode_id", task["task_id"])),
        "env_id": task["env_id"],
        "difficulty": int(task["difficulty"]),
        "seed": int(task["seed"]),
        "actions": _json(actions),
        "messages": _json(getattr(env, "messages", [])),
        "r_task": float(info.get("r_task", -1.0)),
        "r_eff": float(info.get("r_eff", 0.0)),
        "r_hall": float(info.get("r_hall", 0.0)),
        "r_total": float(info.get("r_total", -1.0)),
        "is_correct": bool(info.get("is_correct", False)) and error is None,
        "termination_reason": f"error: {error}" if error else str(info.get("termination_reason", "")),
        "turns": int(getattr(env, "turn", 0)),
        "worker": str(worker),
        "policy": policy,
        "wall_ms": float(wall_ms),
    }


def summary_of(rec: dict) -> dict:
    return {k: rec[k] for k in ("episode_id", "env_id", "difficulty", "seed", "r_total", "is_correct", "turns",
                                "worker", "termination_reason", "wall_ms")}


def outcomes_of(tasks: list[dict], records: list[dict]) -> list[dict]:
    """Curriculum outcomes of finished episodes: every episode counts; the task id goes only
    with rollout 0 of a group (the curriculum drops a task id it has already seen)."""
    out = []
    for t, r in zip(tasks, records):
        o = {"env_id": r["env_id"], "difficulty": r["difficulty"], "is_correct": r["is_correct"]}
        if int(t.get("rollout", 0)) == 0:
            o["task_id"] = int(t["task_id"])
        out.append(o)
    return out


def run_episode_sync(env, policy, task: dict, phrase=None) -> list:
    """Play one episode in this thread (the in-process reference path). Returns the actions."""
    obs, _ = env.reset(seed=int(task["seed"]), options={"difficulty": int(task["difficulty"])})
    actions = []
    for _ in range(MAX_STEPS):
        action = policy.act(obs)
        actions.append(action)
        obs, _, term, trunc, _ = env.step(action)
        if term or trunc:
            return actions
    raise RuntimeError(f"episode did not end within {MAX_STEPS} steps")


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
        self.shopper = shopper  # object with `async phrase(request) -> str`, or None
        self.scheduler = scheduler
        self.max_concurrent = max(1, int(max_concurrent))
        self.pool = ThreadPoolExecutor(max(1, int(threads)), thread_name_prefix=f"env{worker_id}")
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

    async def _phrase(self, env, start: int, task: dict, utterances: dict) -> None:
        """Send shopper messages ``env.messages[start:]`` through the shopper service.

        The request carries the template text and what a rephrasing backend needs to check
        itself: the clean (typo-free) text, the kind, the slots it discloses, the phrases of
        every slot the shopper knows and the ids it mentions."""
        if self.shopper is None:
            return
        for i in range(start, len(env.messages)):
            msg = env.messages[i]
            if msg.get("role") != "user":
                continue
            req = {"text": msg["content"], "env_id": task["env_id"], "turn": env.turn,
                   "episode_id": task["task_id"], "difficulty": task["difficulty"]}
            utt = utterances.get(i)
            if utt is not None:
                shopper = getattr(env, "shopper", None)
                req.update(clean_text=utt.clean_text, kind=utt.kind, slots=list(utt.slots),
                           mentioned_ids=list(utt.mentioned_ids), seed=int(task["seed"]),
                           noise=float(getattr(shopper, "p_noise", 0.0)),
                           slot_phrases={n: sl.phrase for n, sl in getattr(shopper, "slots", {}).items()})
            text = await self.shopper.phrase(req)
            if text != msg["content"]:  # an LLM backend rephrased it: the transcript shows what was said
                msg["content"] = text

    @staticmethod
    def _local_turn(policy, env, obs):
        action = policy.act(obs)
        return action, env.step(action)

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
            clock = {"policy_ms": 0.0, "env_ms": 0.0, "shopper_ms": 0.0}

            async def timed(key, coro):
                s0 = time.perf_counter()
                try:
                    return await coro
                finally:
                    clock[key] += (time.perf_counter() - s0) * 1e3

            env, actions, error, policy = None, [], None, None
            try:
                env = make_env(task["env_id"], self.view)
                utterances = _record_utterances(env)
                options: dict = {"difficulty": int(task["difficulty"])}
                if task.get("axes"):
                    options["axes"] = dict(task["axes"])
                obs, _ = await timed("env_ms", self._call(env.reset, seed=int(task["seed"]), options=options))
                await timed("shopper_ms", self._phrase(env, 0, task, utterances))
                policy = self.policy.episode(env)
                for _ in range(MAX_STEPS):
                    before = len(env.messages)
                    if self.policy.local:
                        action, step = await timed("env_ms", self._call(self._local_turn, policy, env, obs))
                    else:
                        action = await timed("policy_ms", policy.act(obs))
                        step = await timed("env_ms", self._call(env.step, action))
                    actions.append(action)
                    obs, _, term, trunc, _ = step
                    await timed("shopper_ms", self._phrase(env, before, task, utterances))
                    if term or trunc:
                        break
                else:
                    error = f"episode did not end within {MAX_STEPS} steps"
            except Exception as exc:  # noqa: BLE001 - one bad episode never kills the worker
                error = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            wall_ms = (time.perf_counter() - t0) * 1e3
            if env is None:
                env = _Blank()
            rec = trajectory_record(task, env, actions, self.policy.name, self.worker_id, wall_ms, error)
            extra = None
            if finish is not None:
                try:
                    extra = await finish(policy, task, rec)
                except Exception as exc:  # noqa: BLE001 - the record is kept; nothing to learn from
                    traceback.print_exc()
                    extra = (None, {"finish_error": f"{type(exc).__name__}: {exc}"})
            self.active -= 1
            self.finished += 1
            metrics.queue_depth(f"worker{self.worker_id}_active", self.active)
            metrics.episode(rec["env_id"], rec["policy"], rec["r_total"], rec["is_correct"], rec["difficulty"],
                            rec["turns"])
            return rec, clock, extra


def _record_utterances(env) -> dict:
    """{message index: Utterance} of the shopper's messages, recorded as the env writes
    them (so the shopper service gets clean text and slots, not just the final text)."""
    record: dict = {}
    write = getattr(env, "_user", None)
    if write is None:
        return record

    def _user(utt):
        write(utt)
        record[len(env.messages) - 1] = utt

    env._user = _user
    return record


class _Blank:
    messages: list = []
    turn = 0
    reward_info = None


EnvWorker = ray.remote(max_restarts=-1, max_task_retries=0)(EnvWorkerImpl)
