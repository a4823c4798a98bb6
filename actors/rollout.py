"""The one rollout path: `Episode` (one env and its task), the loops that play episodes to
the end with a policy, and the one trajectory record.

Every way of playing an episode goes through here: ``ecomrlve run`` / ``train`` on the Ray
env workers (`play_async`, one asyncio task per episode), in-process training
(`rollout_groups`) and ``ecomrlve eval`` (`play`, all episodes of a batch in lockstep),
``replay`` (recorded actions through `Episode.step`), and the step-by-step episodes of
``serve`` and ``play`` (`Episode.reset` / `Episode.step` per request).

`Episode` contract:

- ``reset()`` builds the env when none was given (``make_env``), installs the phraser (the
  shopper's wording, see `ecomrlve.envs.shopper.Phraser`) and resets with the task's seed,
  difficulty and axis overrides.
- ``step(action)`` records the action and steps the env.
- An exception from make_env, reset, step or the policy never escapes ``reset`` / ``act`` /
  ``step``: the episode ends as a recorded failure (``error``, ``termination_reason =
  "error: <Type>: <message>"``, ``is_correct = False``). A policy that never ends the episode
  fails it after ``max_steps`` actions.
- ``timing`` splits the episode's time: ``policy_ms`` (the policy's act; a batched call is
  shared equally by its episodes), ``env_ms`` (reset + step, shopper wording excluded) and
  ``shopper_ms`` (the phraser).
- ``record(policy, worker)`` is the trajectory row (`ecomrlve.actors.run_dir.TRAJECTORY_SCHEMA`);
  ``extra`` adds columns (eval's trial, task_index, policy_seed, replicated).

Policies (`play`): an object with ``act_batch(observations, keys)`` (an `LLMPolicy`; one call
per turn over all live episodes, ``keys`` are the episodes' ``key``), or a factory
``policy(episode) -> actor`` called once per episode after its reset (``OraclePolicy(env)``
needs the reset env) whose ``act(obs)`` is called per turn. `play_async` takes a factory whose
actors' ``act`` may be a coroutine (a remote engine); a synchronous ``act`` runs together with
its step in the caller's thread pool.

No Ray here: the actors import this module, not the other way round.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Sequence

MAX_STEPS = 256  # safety net; environments end far earlier (T_max)
ERROR_PREFIX = "error: "
log = logging.getLogger(__name__)

__all__ = ["Episode", "play", "play_async", "rollout_groups", "EpisodeResult", "summary_of", "outcomes_of",
           "is_error_reason", "MAX_STEPS"]


def is_error_reason(reason: str) -> bool:
    """`error: ...` (the rollout caught an exception) or `env_error: ...` (ShopEnv.step did)."""
    return str(reason).startswith(("error:", "env_error:"))


def _json(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


class _TimedPhraser:
    """The episode's phraser, timed into ``shopper_ms``."""

    def __init__(self, phraser, episode: "Episode"):
        self.phraser, self.episode = phraser, episode

    def phrase(self, utterance, context) -> str:
        t0 = time.perf_counter()
        try:
            return self.phraser.phrase(utterance, context)
        finally:
            self.episode.timing["shopper_ms"] += (time.perf_counter() - t0) * 1e3


class Episode:
    """One episode of `task` (``env_id``, ``seed``, ``difficulty``, optional ``axes``,
    ``task_id`` / ``episode_id``): see the module doc for the contract.

    `env`: an environment to reuse (serve and play keep one per session); else ``make_env``
    over `catalog` at reset. `phraser`: the shopper's wording for this episode (None keeps the
    env's, the template by default). `key`: the policy's key for this episode (default the
    episode id)."""

    def __init__(self, task: Mapping[str, Any], env=None, catalog=None, phraser=None, key: Any = None,
                 max_steps: int = MAX_STEPS):
        self.task = dict(task)
        self.env_id = str(self.task["env_id"])
        self.seed = int(self.task["seed"])
        self.difficulty = int(self.task["difficulty"])
        self.axes = dict(self.task.get("axes") or {})
        self.episode_id = int(self.task.get("episode_id", self.task.get("task_id", 0)))
        self.key = self.episode_id if key is None else key
        self.env, self.catalog, self.phraser = env, catalog, phraser
        self.max_steps = int(max_steps)
        self.obs: dict | None = None
        self.info: dict = {}
        self.actions: list = []
        self.error: str | None = None
        self.exception: BaseException | None = None
        self.done = False
        self.actor: Any = None  # the per-episode policy a factory made
        self.timing = {"policy_ms": 0.0, "env_ms": 0.0, "shopper_ms": 0.0}

    # ---- the error guard and the clock
    def fail(self, error: BaseException | str) -> None:
        """End the episode as a recorded failure."""
        if isinstance(error, BaseException):
            self.exception = error
            error = f"{type(error).__name__}: {error}"
        self.error, self.done = str(error)[:500], True

    @contextmanager
    def _guard(self, what: str):
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - one broken episode is a recorded failure, never a crash
            log.exception("%s failed: %s seed %s d %s", what, self.env_id, self.seed, self.difficulty)
            self.fail(exc)

    @contextmanager
    def _env_clock(self):
        t0, shopper0 = time.perf_counter(), self.timing["shopper_ms"]
        try:
            yield
        finally:
            spent = (time.perf_counter() - t0) * 1e3
            self.timing["env_ms"] += spent - (self.timing["shopper_ms"] - shopper0)

    # ---- playing
    def reset(self) -> dict | None:
        """Build (if needed) and reset the env; the first observation, or None on failure."""
        with self._env_clock(), self._guard("reset"):
            if self.env is None:
                import ecomrlve.envs as envs

                self.env = envs.make_env(self.env_id, self.catalog, difficulty=self.difficulty)
            if self.phraser is not None:
                self.env.phraser = _TimedPhraser(self.phraser, self)
            options: dict = {"difficulty": self.difficulty}
            if self.axes:
                options["axes"] = dict(self.axes)
            self.obs, self.info = self.env.reset(seed=self.seed, options=options)
        return self.obs

    def step(self, action: Any) -> tuple | None:
        """Record `action` and step the env; the step's 5-tuple, or None on failure."""
        if self.done:
            raise RuntimeError(f"episode {self.episode_id} is over")
        self.actions.append(action)
        out = None
        with self._env_clock(), self._guard("step"):
            out = self.env.step(action)
            self.obs, _, terminated, truncated, self.info = out
            self.done = bool(terminated or truncated)
        if not self.done and len(self.actions) >= self.max_steps:
            self.fail(f"episode did not end within {self.max_steps} steps")
        return out

    def start(self, factory: Callable[["Episode"], Any]) -> Any:
        """The per-episode policy (``factory(self)``, after the reset), made once."""
        if self.actor is None and not self.done:
            with self._guard("policy"):
                self.actor = factory(self)
        return self.actor

    def turn(self, actor) -> None:
        """One synchronous turn: the actor acts, the env steps."""
        t0 = time.perf_counter()
        action, failed = None, True
        with self._guard("policy"):
            action, failed = actor.act(self.obs), False
        self.timing["policy_ms"] += (time.perf_counter() - t0) * 1e3
        if not failed:
            self.step(action)

    async def turn_async(self, actor, run: Callable[..., Awaitable]) -> None:
        """One turn with an awaitable ``actor.act``; the env steps through `run` (a thread pool)."""
        t0 = time.perf_counter()
        action, failed = None, True
        with self._guard("policy"):
            action, failed = await actor.act(self.obs), False
        self.timing["policy_ms"] += (time.perf_counter() - t0) * 1e3
        if not failed:
            await run(self.step, action)

    # ---- the outcome
    @property
    def reward(self) -> dict:
        """The reward fields of the record (a failure scores -1 and is never correct)."""
        info = self.env.reward_info.as_dict() if getattr(self.env, "reward_info", None) is not None else {}
        return {
            "r_task": float(info.get("r_task", -1.0)), "r_eff": float(info.get("r_eff", 0.0)),
            "r_hall": float(info.get("r_hall", 0.0)), "r_total": float(info.get("r_total", -1.0)),
            "is_correct": bool(info.get("is_correct", False)) and self.error is None,
            "termination_reason": (f"{ERROR_PREFIX}{self.error}" if self.error is not None
                                   else str(info.get("termination_reason", ""))),
        }

    @property
    def messages(self) -> list:
        return list(getattr(self.env, "messages", None) or [])

    @property
    def turns(self) -> int:
        return int(getattr(self.env, "turn", 0) or 0)

    def record(self, policy: str, worker: int | str, wall_ms: float | None = None,
               extra: Mapping[str, Any] | None = None) -> dict:
        """The trajectory row (run-dir schema) plus `extra` columns. `wall_ms` defaults to the
        episode's own policy + env + shopper time."""
        if wall_ms is None:
            wall_ms = sum(self.timing.values())
        return {
            "episode_id": self.episode_id, "env_id": self.env_id, "difficulty": self.difficulty, "seed": self.seed,
            "actions": _json(self.actions), "messages": _json(self.messages), **self.reward,
            "turns": self.turns, "worker": str(worker), "policy": str(policy), "wall_ms": float(wall_ms),
            **dict(extra or {}),
        }


# --------------------------------------------------------------------------- the loops


def play(episodes: Sequence[Episode], policy, on_turn: Callable[[float, float, int], None] | None = None) -> None:
    """Play `episodes` to the end in lockstep: each turn the live episodes' observations go to
    `policy` (one ``act_batch`` call, or each episode's actor from the factory), then every
    live episode steps. ``on_turn(policy_s, env_s, live)`` after each turn."""
    for e in episodes:
        if e.obs is None and not e.done:
            e.reset()
    batched = hasattr(policy, "act_batch")
    live = [e for e in episodes if not e.done]
    while live:
        t0 = time.perf_counter()
        if batched:
            try:
                actions = policy.act_batch([e.obs for e in live], [e.key for e in live])
            except Exception as exc:  # noqa: BLE001 - an engine failure fails these episodes, not the caller
                log.exception("act_batch failed for %d episodes", len(live))
                for e in live:
                    e.fail(exc)
                actions = []
            policy_s = time.perf_counter() - t0
            for e in live:
                e.timing["policy_ms"] += policy_s * 1e3 / len(live)
            for e, a in zip(live, actions):
                e.step(a)
        else:
            before = sum(e.timing["policy_ms"] for e in live)
            for e in live:
                actor = e.start(policy)
                if actor is not None:
                    e.turn(actor)
            policy_s = (sum(e.timing["policy_ms"] for e in live) - before) / 1e3
        if on_turn is not None:
            on_turn(policy_s, time.perf_counter() - t0 - policy_s, len(live))
        live = [e for e in live if not e.done]


async def play_async(episode: Episode, factory: Callable[[Episode], Any],
                     run: Callable[..., Awaitable]) -> None:
    """Play one episode to the end: `run(fn, *args)` runs the synchronous env calls (a thread
    pool); an actor whose ``act`` is a coroutine is awaited on the loop, a synchronous one
    acts and steps in one `run` call."""
    await run(episode.reset)
    actor = episode.start(factory)
    if actor is None:
        return
    awaited = inspect.iscoroutinefunction(getattr(actor, "act", None))
    while not episode.done:
        if awaited:
            await episode.turn_async(actor, run)
        else:
            await run(episode.turn, actor)


# --------------------------------------------------------------------------- summaries


def summary_of(rec: Mapping[str, Any]) -> dict:
    """The small per-episode summary of a trajectory record."""
    return {k: rec[k] for k in ("episode_id", "env_id", "difficulty", "seed", "r_total", "is_correct", "turns",
                                "worker", "termination_reason", "wall_ms")}


def outcomes_of(tasks: Sequence[Mapping], records: Sequence[Mapping]) -> list[dict]:
    """Curriculum outcomes of finished episodes: every episode counts; the task id goes only
    with rollout 0 of a group (the curriculum drops a task id it has already seen)."""
    out = []
    for t, r in zip(tasks, records):
        o = {"env_id": r["env_id"], "difficulty": int(r["difficulty"]), "is_correct": bool(r["is_correct"])}
        if int(t.get("rollout", 0)) == 0:
            o["task_id"] = int(t["task_id"])
        out.append(o)
    return out


# --------------------------------------------------------------------------- training groups


@dataclass
class EpisodeResult:
    """A training episode: its task, rollout index, the policy's token record and reward."""

    task: dict  # env_id, difficulty, seed, task_id
    rollout: int
    tokens: Any  # EpisodeTokens (or its dict)
    reward: dict  # the record's reward fields
    messages: list
    actions: list
    turns: int
    gen_s: float = 0.0
    env_s: float = 0.0
    episode: Episode | None = None

    @property
    def episode_id(self) -> int:
        return int(self.task["task_id"]) * 1_000 + self.rollout

    @property
    def is_error(self) -> bool:
        """The episode broke (an exception in env code), not the policy: it is recorded but
        never trained on and never reported to the curriculum."""
        return is_error_reason(self.reward.get("termination_reason", ""))

    def record(self, policy: str) -> dict:
        """The trajectory row (worker ``train``)."""
        if self.episode is None:
            raise ValueError("episode: this result carries no episode to record")
        return self.episode.record(policy, "train")


def rollout_groups(policy, catalog, tasks: Sequence[dict], group_size: int, axes: dict | None = None,
                   on_turn: Callable[[float, float, int], None] | None = None,
                   max_steps: int = 64) -> list[EpisodeResult]:
    """Play every task `group_size` times at once with `policy` (``act_batch`` /
    ``pop_episode``, an `LLMPolicy`): one batched call per turn over all live episodes.
    Returns one `EpisodeResult` per episode (task order, then rollout)."""
    episodes = []
    for t in tasks:
        for g in range(group_size):
            task = {**t, "episode_id": int(t["task_id"]) * 1_000 + g, **({"axes": dict(axes)} if axes else {})}
            e = Episode(task, catalog=catalog, key=(int(t["task_id"]), g), max_steps=max_steps)
            policy.episodes.pop(e.key, None)
            episodes.append((dict(t), g, e))
    play([e for _, _, e in episodes], policy, on_turn)
    done = [EpisodeResult(t, g, policy.pop_episode(e.key), e.reward, e.messages, list(e.actions), e.turns,
                          e.timing["policy_ms"] / 1e3, (e.timing["env_ms"] + e.timing["shopper_ms"]) / 1e3, e)
            for t, g, e in episodes]
    done.sort(key=lambda r: (int(r.task["task_id"]), r.rollout))
    return done
