"""``ecomrlve train`` (DAPO with the curriculum) and ``ecomrlve sft`` (warm start on oracle
traces).

    ecomrlve sft runs/oracle1 --model smollm2 --steps 200 --out runs/sft1
    ecomrlve train --collection C1 --model runs/sft1/model --steps 100 --group-size 8
    ecomrlve train --collection C1 --model smollm2 --steps 100 --resume runs/train1   # continue

The loop, per step: lease tasks from the curriculum -> roll each out G times (env
workers + policy engine) -> rewards (+ soft overlong penalty) -> dynamic sampling (groups
with equal rewards dropped; another round of tasks when too few groups carry signal) ->
one DAPO update in the learner -> versioned weights pushed to the engine(s), checksum
verified -> outcomes reported to the curriculum -> checkpoint every K steps.

Two runners share every piece:

- Ray (default; `ecomrlve.actors.train_ray`): the actor system of ``ecomrlve run`` (catalog shards,
  the shopper Serve deployment, the curriculum scheduler, the trajectory writer, W env
  workers) with a `PolicyEngine` as the workers' policy and a `Learner` actor; rollouts of
  the next step overlap the update (bounded by ``--max-staleness``); metrics go to the Ray
  dashboard.
- in-process (``--in-process``): `envs.make_env` + `LLMPolicy.act_batch` (one batched
  generate per turn over all live episodes), `LearnerCore` and an `HFEngine` holding its own
  copy of the weights (so the weight-sync path is the same one Ray uses). No Ray at all.

Run directory: ``config.json``, ``metrics.jsonl`` (one line per step), ``trajectories.parquet``
(the ``ecomrlve run`` schema, episode_id = task_id * 1000 + rollout), ``curriculum.json``,
``summary.md``, ``checkpoints/step_NNNNNN/`` (``model/``, ``optimizer.pt``, ``learner.json``,
``curriculum.json``, ``train_state.json``) and ``checkpoints/latest``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["TrainConfig", "Trainer", "EpisodeResult", "rollout_groups", "to_trajectory", "add_train_commands",
           "sft_examples", "run_sft", "trainable", "is_error_reason", "no_update_warning"]

MAX_TURNS = 64
log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- config


@dataclass
class TrainConfig:
    collection: str = "C1"
    model: str = "smollm2"
    steps: int = 10
    out: str | None = None
    device: str = "cpu"
    engine: str = "hf"  # hf | vllm
    dtype: str | None = None  # engine dtype (default float32 on CPU, bfloat16 on CUDA)
    group_size: int = 8
    tasks_per_step: int = 4
    min_groups: int = 1  # informative groups wanted per step (dynamic sampling)
    max_sampling_rounds: int = 3  # task rounds per step at most
    max_new_tokens: int = 256
    temperature: float = 1.0
    # chat settings: None takes the model directory's chat.json, else the project default
    # (ecomrlve.policies.chat_settings); validate() puts the resolved values in
    prefill: str | None = None
    lenient: bool | None = None  # accept a leading JSON object followed by other text
    tool_format: str | None = None
    warm_start: str = "auto"  # auto | always | never: SFT on oracle episodes first (ecomrlve.actors.warm_start)
    warm_start_episodes: int = 32
    warm_start_steps: int = 40
    catalog_size: int = 20_000
    catalog_dir: str | None = None
    catalog_seed: int = 0
    seed: int = 0
    axes: dict = field(default_factory=dict)  # axis overrides for every task (e.g. {"T_max": 2})
    max_staleness: int = 1
    checkpoint_every: int = 10
    resume: str | None = None  # a run directory to continue
    ray: bool = True  # the actor system (ecomrlve.actors.train_ray); False: the in-process Trainer
    workers: int = 2  # env worker actors
    shards: int = 2  # catalog shard actors
    shopper: str = "serve"  # serve | local | none (as in ecomrlve run)
    shopper_backend: str = "template"
    max_concurrent: int = 64  # episodes at once per env worker
    batch_size: int | None = None  # rollouts per dispatch call (default: the group size)
    sync: bool | None = None  # rollouts and updates alternate; None: on CPU yes, on CUDA overlap them
    engine_max_batch: int = 256  # turns per batched generate in the PolicyEngine
    batch_wait_ms: float = 5.0  # how long the engine gathers concurrent turns
    engine_opts: dict = field(default_factory=dict)  # HFEngine / VLLMEngine options (static_cache, compile, ...)
    address: str | None = None
    num_cpus: int | None = None
    curriculum: dict = field(default_factory=dict)  # tau_num, tau_acc, ...
    dapo: dict = field(default_factory=dict)  # DAPOConfig overrides (lr, eps_high, overlong_buffer, ...)
    threads: int | None = None  # torch threads

    def validate(self) -> "TrainConfig":
        from ecomrlve.envs import resolve_envs

        resolve_envs(self.collection)
        for name in ("steps", "group_size", "tasks_per_step", "max_new_tokens", "max_sampling_rounds", "workers",
                     "checkpoint_every", "warm_start_episodes", "warm_start_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not 2 <= self.group_size <= 1000:
            raise ValueError(f"group_size must be in [2, 1000] (advantages are relative to the group), "
                             f"got {self.group_size}")
        from .warm_start import WARM_START_MODES

        if self.warm_start not in WARM_START_MODES:
            raise ValueError(f"warm_start must be one of {', '.join(WARM_START_MODES)}, got {self.warm_start!r}")
        if self.engine not in ("hf", "vllm"):
            raise ValueError(f"engine must be hf or vllm, got {self.engine!r}")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0 for RL sampling")
        if self.max_staleness < 0:
            raise ValueError("max_staleness must be >= 0")
        for name in ("shards", "max_concurrent", "engine_max_batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int)
                                            or self.batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.shopper not in ("serve", "local", "none"):
            raise ValueError(f"shopper must be 'serve', 'local' or 'none', got {self.shopper!r}")
        if not self.batch_wait_ms >= 0:
            raise ValueError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms!r}")
        if self.catalog_dir is None and self.catalog_size < self.shards:
            raise ValueError(f"catalog_size must be >= shards ({self.shards}), got {self.catalog_size}")
        from ecomrlve.envs import axes_for

        axes_for(0, self.axes or None)  # names a bad axis
        from ecomrlve.policies.dapo import DAPOConfig

        unknown = set(self.dapo) - {f.name for f in dataclasses.fields(DAPOConfig)}
        if unknown:
            raise ValueError(f"unknown DAPO option(s): {', '.join(sorted(unknown))}")
        if self.catalog_dir is not None and not Path(self.catalog_dir).expanduser().is_dir():
            raise ValueError(f"--catalog: no catalog directory at {self.catalog_dir}")
        if not self.resume:  # a resumed run loads its checkpoint's model
            from ecomrlve.policies.models import ModelNotFound, locate_model

            try:
                locate_model(self.model)
            except ModelNotFound as exc:
                raise ValueError(f"--model: {exc}") from None
        chat = self.chat_settings()
        self.prefill, self.tool_format, self.lenient = chat.prefill, chat.tool_format, chat.lenient
        return self

    def chat_settings(self):
        """The `ChatSettings` of this run: the fields set here over those recorded in the
        model directory (the latest checkpoint's on resume), else the project default."""
        from ecomrlve.policies.chat_settings import ChatSettings

        src = self.model
        if self.resume:
            latest = Path(self.resume) / "checkpoints" / "latest"
            if latest.is_file():
                src = str(latest.parent / latest.read_text().strip() / "model")
        try:
            return ChatSettings.for_model(src, self.prefill, self.tool_format, self.lenient)
        except ValueError as exc:
            raise ValueError(f"--model: {exc}") from None

    def overlap(self) -> bool:
        """Whether the next step's rollouts run during the update (the Ray runner). Default:
        on CUDA only. On a CPU machine generation and update share the cores, and measured
        on 2 vCPUs a step took 1.47x longer overlapped than alternating (benchmarks/learner.py)."""
        sync = (not self.device.startswith("cuda")) if self.sync is None else self.sync
        return not sync and self.max_staleness >= 1

    def dispatch_size(self) -> int:
        return self.batch_size or self.group_size

    def dapo_config(self):
        from ecomrlve.policies.dapo import DAPOConfig

        return DAPOConfig(**{"group_size": self.group_size, "temperature": self.temperature, **self.dapo})


# --------------------------------------------------------------------------- rollouts


@dataclass
class EpisodeResult:
    task: dict  # env_id, difficulty, seed, task_id
    rollout: int
    tokens: Any  # EpisodeTokens (or its dict)
    reward: dict  # info["reward"]
    messages: list
    actions: list
    turns: int
    gen_s: float = 0.0
    env_s: float = 0.0

    @property
    def episode_id(self) -> int:
        return int(self.task["task_id"]) * 1_000 + self.rollout

    @property
    def is_error(self) -> bool:
        """The episode broke (an exception in env code), not the policy: it is recorded but
        never trained on and never reported to the curriculum."""
        return is_error_reason(self.reward.get("termination_reason", ""))


def is_error_reason(reason: str) -> bool:
    """`error: ...` (the runner caught an exception) or `env_error: ...` (ShopEnv.step did)."""
    return str(reason).startswith(("error:", "env_error:"))


def trainable(results: Sequence[EpisodeResult]) -> list[EpisodeResult]:
    """The episodes the update and the curriculum see: error episodes are left out (they
    are still written to the run's trajectories)."""
    return [r for r in results if not r.is_error]


def _error_reward(exc: BaseException) -> dict:
    return {"r_total": -1.0, "is_correct": False, "termination_reason": f"error: {type(exc).__name__}: {exc}"[:500]}


def _jsonable_action(a: Any) -> Any:
    return a if isinstance(a, (str, dict, list)) else str(a)


def rollout_groups(policy, catalog, tasks: Sequence[dict], group_size: int, axes: dict | None = None,
                   on_turn: Callable[[float, float, int], None] | None = None) -> list[EpisodeResult]:
    """Play every task `group_size` times at once: one `act_batch` per turn over all live
    episodes. Returns one `EpisodeResult` per episode (task order, then rollout)."""
    from ecomrlve.envs import make_env

    live = []
    done: list[EpisodeResult] = []
    for t in tasks:
        for g in range(group_size):
            env = make_env(t["env_id"], catalog)
            opts: dict = {"difficulty": int(t["difficulty"])}
            if axes:
                opts["axes"] = dict(axes)
            key = (int(t["task_id"]), g)
            policy.episodes.pop(key, None)
            try:
                obs, _ = env.reset(seed=int(t["seed"]), options=opts)
            except Exception as exc:  # noqa: BLE001 - one broken episode never ends training
                log.exception("reset failed: %s", t)
                done.append(EpisodeResult(dict(t), g, None, _error_reward(exc), [], [], 0))
                continue
            live.append({"task": dict(t), "g": g, "env": env, "obs": obs, "key": key, "actions": [], "gen": 0.0,
                         "env_s": 0.0})
    for _ in range(MAX_TURNS):
        if not live:
            break
        t0 = time.perf_counter()
        actions = policy.act_batch([e["obs"] for e in live], [e["key"] for e in live])
        gen = time.perf_counter() - t0
        t1 = time.perf_counter()
        still = []
        for e, a in zip(live, actions):
            e["gen"] += gen / len(live)
            s0 = time.perf_counter()
            e["actions"].append(_jsonable_action(a))
            try:
                obs, _, term, trunc, info = e["env"].step(a)
            except Exception as exc:  # noqa: BLE001 - recorded as an error, left out of the update
                log.exception("env.step failed: %s rollout %s", e["task"], e["g"])
                term, trunc, info = True, False, {"reward": _error_reward(exc)}
                obs = e["obs"]
            e["env_s"] += time.perf_counter() - s0
            e["obs"] = obs
            if term or trunc:
                env = e["env"]
                done.append(EpisodeResult(e["task"], e["g"], policy.pop_episode(e["key"]), info["reward"],
                                          list(env.messages), e["actions"], int(env.turn), e["gen"], e["env_s"]))
            else:
                still.append(e)
        if on_turn is not None:
            on_turn(gen, time.perf_counter() - t1, len(live))
        live = still
    for e in live:  # safety net: never reached with T_max-bounded envs
        done.append(EpisodeResult(e["task"], e["g"], policy.pop_episode(e["key"]),
                                  {"r_total": -1.0, "is_correct": False, "termination_reason": "error: max turns"},
                                  list(e["env"].messages), e["actions"], int(e["env"].turn), e["gen"], e["env_s"]))
    done.sort(key=lambda r: (int(r.task["task_id"]), r.rollout))
    return done


def to_trajectory(res: EpisodeResult, max_new_tokens: int, dapo_cfg) -> Any:
    """An `EpisodeResult` as a learner `Trajectory`: r_total plus the soft overlong penalty
    of its worst turn; the group is the task id."""
    from ecomrlve.policies.codec import EpisodeTokens
    from ecomrlve.policies.dapo import Trajectory, overlong_penalty

    ep = res.tokens if isinstance(res.tokens, EpisodeTokens) else EpisodeTokens.from_dict(res.tokens or {"turns": []})
    lengths = [len(t.completion_ids) for t in ep.turns]
    truncated = [t.finish_reason == "length" for t in ep.turns]
    pen = min((overlong_penalty(n, max_new_tokens, dapo_cfg.overlong_buffer, dapo_cfg.overlong_factor, tr)
               for n, tr in zip(lengths, truncated)), default=0.0)
    reward = float(res.reward.get("r_total", -1.0)) + pen
    return Trajectory(ep.segments(), reward, int(res.task["task_id"]), ep.min_version(), lengths, truncated,
                      {"env_id": res.task["env_id"], "difficulty": int(res.task["difficulty"]),
                       "r_total": float(res.reward.get("r_total", -1.0)), "overlong_penalty": pen,
                       "is_correct": bool(res.reward.get("is_correct", False)),
                       "termination_reason": str(res.reward.get("termination_reason", ""))})


def _record(res: EpisodeResult, policy_name: str, wall_ms: float = 0.0) -> dict:
    r = res.reward
    return {
        "episode_id": res.episode_id, "env_id": res.task["env_id"], "difficulty": int(res.task["difficulty"]),
        "seed": int(res.task["seed"]), "actions": json.dumps(res.actions, ensure_ascii=False, default=str),
        "messages": json.dumps(res.messages, ensure_ascii=False, default=str),
        "r_task": float(r.get("r_task", -1.0)), "r_eff": float(r.get("r_eff", 0.0)),
        "r_hall": float(r.get("r_hall", 0.0)), "r_total": float(r.get("r_total", -1.0)),
        "is_correct": bool(r.get("is_correct", False)), "termination_reason": str(r.get("termination_reason", "")),
        "turns": int(res.turns), "worker": "train", "policy": policy_name, "wall_ms": float(wall_ms),
    }


def _summary(rec: dict) -> dict:
    return {k: rec[k] for k in ("episode_id", "env_id", "difficulty", "seed", "r_total", "is_correct", "turns",
                                "termination_reason")}


def _outcomes(results: Sequence[EpisodeResult]) -> list[dict]:
    """Curriculum outcomes: every rollout counts; the task id goes with the first one only
    (the curriculum ignores a task id reported twice)."""
    out = []
    for r in results:
        o = {"env_id": r.task["env_id"], "difficulty": int(r.task["difficulty"]),
             "is_correct": bool(r.reward.get("is_correct", False))}
        if r.rollout == 0:
            o["task_id"] = int(r.task["task_id"])
        out.append(o)
    return out


def _make_catalog(cfg: TrainConfig):
    from ecomrlve.catalog_service import Catalog

    if cfg.catalog_dir:
        return Catalog.load(cfg.catalog_dir)
    return Catalog.synthetic(n_products=cfg.catalog_size, seed=cfg.catalog_seed)


def _step_stats(results: Sequence[EpisodeResult], trajs) -> dict:
    n = len(results) or 1
    reasons = [str(r.reward.get("termination_reason", "")) for r in results]
    return {
        "episodes": len(results),
        "reward_mean": sum(float(r.reward.get("r_total", -1)) for r in results) / n,
        "success_rate": sum(bool(r.reward.get("is_correct")) for r in results) / n,
        "invalid_rate": sum(x.startswith("invalid") for x in reasons) / n,
        "error_episodes": sum(is_error_reason(x) for x in reasons),
        "turns_mean": sum(r.turns for r in results) / n,
        "policy_tokens": sum(t.n_tokens for t in trajs),
        "truncated_replies": sum(sum(t.truncated) for t in trajs),
    }


def no_update_warning(m: dict) -> str | None:
    """A warning line for a step whose every group was dropped by dynamic sampling (so the
    weights did not move), naming why; None for a step that updated."""
    if m.get("stepped") or not m.get("groups_dropped"):
        return None
    if m.get("invalid_rate", 0.0) >= 1.0:
        why = ("every action was invalid (reward -1 everywhere): the model writes no valid action; warm-start it "
               "(--warm-start always) or check --prefill / --tool-format")
    else:
        why = ("every group had equal rewards (no spread to learn from): raise --group-size or --max-rounds, or "
               "adjust the difficulty")
    stale = f", {m['stale_dropped']} stale trajectories" if m.get("stale_dropped") else ""
    return (f"warning: step {m.get('step')}: no update, all {m['groups_dropped']} groups dropped{stale}: {why}")


# --------------------------------------------------------------------------- in-process trainer


class Trainer:
    """The in-process train loop (see module docstring). `run()` returns the final metrics."""

    def __init__(self, cfg: TrainConfig, log: Callable[[str], None] = print):
        self.cfg = cfg.validate()
        self.log = log
        self.step = 0
        self.metrics: list[dict] = []
        self.turn_times: list[tuple[float, float, int]] = []  # (generation s, env s, live episodes) per turn

    # ---- setup
    def setup(self) -> "Trainer":
        import torch

        from ecomrlve.envs import resolve_envs
        from ecomrlve.policies.engines import HFEngine
        from ecomrlve.policies.llm_policy import LLMPolicy
        from ecomrlve.policies.models import load_model
        from ecomrlve.scheduler import Curriculum, CurriculumConfig

        from .learner import LearnerCore

        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        self.run_dir = _run_dir(cfg)
        ckpt = _latest_checkpoint(self.run_dir) if cfg.resume else None
        self.catalog = _make_catalog(cfg)
        from .warm_start import warm_start

        model_src = str(ckpt / "model") if ckpt else warm_start(cfg, self.run_dir, self.log, self.catalog)
        t0 = time.perf_counter()
        model, tok = load_model(model_src, device=cfg.device, dtype="float32")
        self.learner = LearnerCore(model, tok, cfg.dapo_config(), cfg.device, cfg.max_staleness)
        if cfg.engine != "hf":
            raise ValueError("the in-process trainer runs the hf engine; drop --in-process for vllm")
        emodel, _ = load_model(model_src, device=cfg.device, dtype=cfg.dtype)
        self.engine = HFEngine(emodel, tok, device=cfg.device, **cfg.engine_opts)
        self.tokenizer = tok
        from ecomrlve.policies.codec import ChatCodec

        self.codec = ChatCodec(tok, tool_format=cfg.tool_format, prefill=cfg.prefill, lenient=cfg.lenient)
        self.policy = LLMPolicy(self.engine, codec=self.codec, temperature=cfg.temperature,
                                max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
        env_ids = resolve_envs(cfg.collection)
        if ckpt:
            self.curriculum = Curriculum.from_json((ckpt / "curriculum.json").read_text())
            self.learner.load_optimizer(ckpt)
            state = json.loads((ckpt / "train_state.json").read_text())
            self.step = int(state["step"])
            self.policy.calls = int(state.get("policy_calls", 0))
            self.log(f"resumed from {ckpt} at step {self.step}, version {self.learner.version}")
        else:
            ccfg = CurriculumConfig.from_dict({"first_seed": cfg.seed * 1_000_000, **cfg.curriculum})
            self.curriculum = Curriculum(env_ids, ccfg, seed=cfg.seed)
        self._sync()
        self.log(f"model {cfg.model}: learner + engine ready in {time.perf_counter() - t0:.1f} s; run dir {self.run_dir}")
        _write_json(self.run_dir / "config.json", dataclasses.asdict(cfg))
        self.writer = _trajectory_writer(self.run_dir, append=bool(ckpt))
        self.summaries: list[dict] = []
        return self

    def _sync(self) -> dict:
        t0 = time.perf_counter()
        sd, version, checksum = self.learner.weights(dtype=self.engine.dtype)
        got = self.engine.load_weights(sd, version, checksum)
        return {"sync_s": time.perf_counter() - t0, "checksum": got, "version": version}

    # ---- one step
    def train_step(self) -> dict:
        cfg = self.cfg
        dcfg = self.learner.cfg
        t0 = time.perf_counter()
        results: list[EpisodeResult] = []
        trajs = []
        rounds = 0
        gen_s = env_s = 0.0
        from ecomrlve.policies.dapo import filter_groups

        while rounds < cfg.max_sampling_rounds:
            rounds += 1
            tasks = [t.as_dict() for t in self.curriculum.lease(cfg.tasks_per_step)]
            timing = [0.0, 0.0]

            def on_turn(g, e, n, timing=timing):
                timing[0] += g
                timing[1] += e
                self.turn_times.append((g, e, n))

            res = rollout_groups(self.policy, self.catalog, tasks, cfg.group_size, cfg.axes, on_turn)
            gen_s += timing[0]
            env_s += timing[1]
            self.curriculum.report(_outcomes(trainable(res)))
            results += res
            trajs += [to_trajectory(r, cfg.max_new_tokens, dcfg) for r in trainable(res)]
            kept, _ = filter_groups(trajs)
            if len({t.group for t in kept}) >= cfg.min_groups:
                break
        rollout_s = time.perf_counter() - t0
        upd = self.learner.update(trajs)
        sync = self._sync() if upd["stepped"] else {"sync_s": 0.0, "checksum": self.engine.checksum,
                                                     "version": self.engine.version}
        recs = [_record(r, f"llm:{cfg.model}") for r in results]
        if self.writer is not None:
            self.writer.write(recs)
        self.summaries += [_summary(r) for r in recs]
        self.step += 1
        m = {"step": self.step, "rounds": rounds, **_step_stats(results, trajs), "rollout_s": rollout_s,
             "gen_s": gen_s, "env_s": env_s, **{k: v for k, v in upd.items() if not isinstance(v, (list, dict))},
             "sync_s": sync["sync_s"], "engine_version": self.engine.version, "engine_checksum": sync["checksum"],
             "windows": {e: list(w) for e, w in self.curriculum.windows().items()}}
        self.metrics.append(m)
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(m) + "\n")
        _write_text(self.run_dir / "curriculum.json", self.curriculum.to_json())
        return m

    def checkpoint(self) -> Path:
        d = self.run_dir / "checkpoints" / f"step_{self.step:06d}"
        self.learner.save(d, self.cfg.chat_settings())
        _write_text(d / "curriculum.json", self.curriculum.to_json())
        _write_json(d / "train_state.json", {"step": self.step, "version": self.learner.version,
                                             "policy_calls": self.policy.calls,
                                             "engine_checksum": self.engine.checksum})
        _write_text(self.run_dir / "checkpoints" / "latest", d.name + "\n")
        return d

    def run(self) -> list[dict]:
        if not hasattr(self, "learner"):
            self.setup()
        cfg = self.cfg
        try:
            while self.step < cfg.steps:
                m = self.train_step()
                self.log(f"step {m['step']}/{cfg.steps}: reward {m['reward_mean']:+.3f} success {m['success_rate']:.0%} "
                         f"invalid {m['invalid_rate']:.0%} groups kept {m.get('groups_kept', 0)} dropped "
                         f"{m.get('groups_dropped', 0)} | rollout {m['rollout_s']:.1f} s (gen {m['gen_s']:.1f}, env "
                         f"{m['env_s']:.2f}) update {m.get('update_s', 0):.1f} s | version {m['engine_version']}")
                warning = no_update_warning(m)
                if warning:
                    self.log(warning)
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.checkpoint()
        finally:
            self.close()
        return self.metrics

    def close(self) -> None:
        if getattr(self, "writer", None) is not None:
            self.writer.close()
            self.writer = None
            try:
                from . import run_dir as rd

                rd.write_summary(self.run_dir, self.summaries, self.curriculum.state(),
                                 {"policy": f"llm:{self.cfg.model} (DAPO)", "collection": self.cfg.collection,
                                  "episodes": len(self.summaries)})
                rd.write_plots(self.run_dir, self.summaries)
            except Exception as exc:  # noqa: BLE001 - the summary is a convenience
                self.log(f"summary not written: {exc}")


# --------------------------------------------------------------------------- helpers


def _run_dir(cfg: TrainConfig) -> Path:
    if cfg.resume:
        p = Path(cfg.resume)
        if not p.is_dir():
            raise ValueError(f"--resume {cfg.resume}: no such run directory")
        return p.resolve()
    try:
        from .run_dir import new_run_dir

        return new_run_dir(cfg.out, root="runs")
    except ImportError:
        p = Path(cfg.out or f"runs/train-{time.strftime('%Y%m%d-%H%M%S')}")
        p.mkdir(parents=True, exist_ok=True)
        return p.resolve()


def _latest_checkpoint(run_dir: Path) -> Path | None:
    latest = run_dir / "checkpoints" / "latest"
    if not latest.exists():
        raise ValueError(f"{run_dir} has no checkpoints/latest to resume from")
    d = run_dir / "checkpoints" / latest.read_text().strip()
    if not (d / "model").is_dir():
        raise ValueError(f"checkpoint {d} has no model directory")
    return d


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_json(path: Path, obj) -> None:
    _write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _trajectory_writer(run_dir: Path, append: bool):
    from .run_dir import TrajectoryWriterImpl

    return TrajectoryWriterImpl(str(run_dir), append=append)


# --------------------------------------------------------------------------- SFT


def _read_run_dir(run_dir) -> list[dict]:
    """Episodes of an ``ecomrlve run`` directory (or a parquet file): rows with at least
    ``messages`` and ``actions`` (JSON strings or lists) and ``env_id``."""
    import pyarrow.parquet as pq

    p = Path(run_dir)
    if p.is_file():
        files = [p]
    else:
        try:
            from .run_dir import TRAJECTORY_FILE
        except ImportError:
            TRAJECTORY_FILE = "trajectories.parquet"  # noqa: N806
        files = [p / TRAJECTORY_FILE] if (p / TRAJECTORY_FILE).exists() else sorted(p.glob("*.parquet"))
    if not files:
        raise ValueError(f"{run_dir}: no trajectories parquet found")
    rows = []
    for f in files:
        rows += pq.read_table(f).to_pylist()
    for i, r in enumerate(rows):
        for col in ("messages", "actions", "env_id"):
            if col not in r:
                raise ValueError(f"{files[0]}: column {col!r} missing (row {i})")
    return rows


def sft_examples(rows: Sequence[dict], codec, only_correct: bool = True) -> tuple[list[tuple[list[int], list[int]]], dict]:
    """(ids, loss mask) per episode: every agent turn is the canonical action text after the
    codec's prefill, plus the stop token; only those tokens are in the mask."""
    from ecomrlve.envs import env_class
    from ecomrlve.envs.tools import tool_schemas
    from ecomrlve.policies.codec import EpisodeTokens, TurnTokens, action_to_text

    eos = codec.stop_ids[0]
    out, skipped = [], {"not_correct": 0, "prefill_mismatch": 0, "bad_row": 0}
    schemas: dict[str, list] = {}
    for r in rows:
        if only_correct and not r.get("is_correct", True):
            skipped["not_correct"] += 1
            continue
        try:
            messages = json.loads(r["messages"]) if isinstance(r["messages"], str) else list(r["messages"])
            actions = json.loads(r["actions"]) if isinstance(r["actions"], str) else list(r["actions"])
            if r["env_id"] not in schemas:
                schemas[r["env_id"]] = tool_schemas(env_class(r["env_id"]).tools)
        except (ValueError, TypeError, KeyError):
            skipped["bad_row"] += 1
            continue
        tools = schemas[r["env_id"]]
        at = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
        if len(at) < len(actions):
            skipped["bad_row"] += 1
            continue
        ep = EpisodeTokens()
        ok = True
        for k, action in enumerate(actions):
            text = action_to_text(action)
            if not text.startswith(codec.prefill):
                ok = False
                break
            prompt, _ = codec.next_prompt(ep, {"messages": messages[:at[k]], "tools": tools})
            comp = codec.encode(text[len(codec.prefill):]) + [eos]
            ep.turns.append(TurnTokens(prompt, comp, [0.0] * len(comp), "stop", n_messages=at[k]))
        if not ok or not ep.turns:
            skipped["prefill_mismatch"] += 1
            continue
        for ids, mask, _ in ep.segments():
            out.append((ids, mask))
    return out, skipped


def run_sft(run_dir, model: str = "smollm2", steps: int = 100, out: str | None = None, batch_size: int = 4,
            lr: float = 5e-5, device: str = "cpu", prefill: str | None = None, tool_format: str | None = None,
            only_correct: bool = True, seed: int = 0, max_tokens: int = 8192, log: Callable[[str], None] = print,
            model_obj=None, tokenizer=None) -> dict:
    """Supervised warm start on oracle episodes; only agent tokens are in the loss. `prefill`
    and `tool_format` default to `model`'s recorded chat settings (else the project default);
    the saved model records them (``OUT/model/chat.json``)."""
    import random

    import torch

    from ecomrlve.policies.chat_settings import ChatSettings
    from ecomrlve.policies.dapo import _micro_batches, make_batch, sft_loss
    from ecomrlve.policies.models import load_model, save_model

    if model_obj is None:
        model_obj, tokenizer = load_model(model, device=device, dtype="float32")
    chat = ChatSettings.for_model(model, prefill, tool_format)
    codec = chat.codec(tokenizer)
    rows = _read_run_dir(run_dir)
    examples, skipped = sft_examples(rows, codec, only_correct)
    if not examples:
        raise ValueError(f"no usable episodes in {run_dir} (skipped: {skipped})")
    log(f"sft: {len(examples)} sequences from {len(rows)} episodes (skipped {skipped}); "
        f"{sum(sum(m) for _, m in examples)} agent tokens of {sum(len(i) for i, _ in examples)}")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW([p for p in model_obj.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order: list[int] = []
    losses = []
    t0 = time.perf_counter()
    tokens = 0
    model_obj.train()
    for step in range(1, steps + 1):
        batch = []
        for _ in range(min(batch_size, len(examples))):
            if not order:
                order = list(range(len(examples)))
                rng.shuffle(order)
            batch.append(examples[order.pop()])
        n_mask = sum(sum(m) for _, m in batch)
        opt.zero_grad(set_to_none=True)
        total = 0.0
        rows_b = [(i, m, [0.0] * len(i), 0.0) for i, m in batch]
        for mb in _micro_batches(rows_b, max_tokens):
            ids, attn, mask, _, _ = make_batch(mb, pad, device)
            loss, n = sft_loss(model_obj, ids, attn, mask)
            (loss * (n / n_mask)).backward()
            total += float(loss.detach()) * n / n_mask
            tokens += int(attn.sum())
        torch.nn.utils.clip_grad_norm_(model_obj.parameters(), 1.0)
        opt.step()
        losses.append(total)
        if step == 1 or step % 10 == 0 or step == steps:
            log(f"sft step {step}/{steps}: loss {total:.4f} ({tokens / (time.perf_counter() - t0):.0f} tokens/s)")
    model_obj.eval()
    result = {"steps": steps, "sequences": len(examples), "loss_first": losses[0], "loss_last": losses[-1],
              "tokens_per_s": tokens / (time.perf_counter() - t0), "skipped": skipped}
    if out:
        d = save_model(model_obj, tokenizer, Path(out) / "model", chat=chat)
        _write_json(Path(out) / "sft.json", {**result, "run_dir": str(run_dir), "model": model, "lr": lr,
                                               "batch_size": batch_size, "prefill": chat.prefill})
        result["model_dir"] = str(d)
        log(f"sft: model saved to {d} (use --model {d})")
    return result


# --------------------------------------------------------------------------- CLI


def _kv(items: Sequence[str] | None, what: str) -> dict:
    out = {}
    for it in items or []:
        if "=" not in it:
            raise ValueError(f"--{what} expects KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="DAPO training of an LLM policy with the adaptive curriculum",
                       description="Train an LLM agent with DAPO on a collection; writes a run directory with "
                                   "metrics, trajectories, curriculum and checkpoints.")
    p.add_argument("--collection", "-c", default="C1", help="collection, env id or comma-separated mix (default C1)")
    p.add_argument("--model", default="smollm2", help="smollm2, a local model directory, or a cached HF id")
    p.add_argument("--steps", type=int, default=10, help="optimizer steps (default 10)")
    p.add_argument("--out", default=None, help="run directory (default runs/<timestamp>)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--engine", choices=("hf", "vllm"), default="hf", help="generation engine (default hf)")
    p.add_argument("--dtype", default=None, help="engine dtype: float32, bfloat16, float16")
    p.add_argument("--group-size", "-G", type=int, default=8, help="rollouts per task (default 8)")
    p.add_argument("--tasks-per-step", type=int, default=4, help="tasks per sampling round (default 4)")
    p.add_argument("--max-rounds", type=int, default=3, help="dynamic-sampling rounds per step (default 3)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="tokens per reply (default 256)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--prefill", default=None,
                   help="assistant prefill ('' for none; default: the model directory's chat.json, else '{\"')")
    p.add_argument("--lenient", action="store_const", const=True, default=None,
                   help="accept a JSON object followed by other text (default: the model directory's chat.json)")
    p.add_argument("--tool-format", choices=("auto", "native", "compact", "json", "none"), default=None,
                   help="how tools are shown (default: the model directory's chat.json, else auto)")
    p.add_argument("--warm-start", choices=("auto", "always", "never"), default="auto",
                   help="SFT on oracle episodes before the first step: auto (default) when fewer than half of "
                        "a greedy probe's replies are valid actions, always, or never")
    p.add_argument("--warm-start-episodes", type=int, default=32, help="oracle episodes of the warm start (default 32)")
    p.add_argument("--warm-start-steps", type=int, default=40, help="SFT steps of the warm start (default 40)")
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default 1e-5)")
    p.add_argument("--overlong-buffer", type=int, default=None, help="soft overlong penalty window in tokens")
    p.add_argument("--dapo", action="append", metavar="KEY=VALUE", help="any DAPOConfig field, repeatable")
    p.add_argument("--axis", action="append", metavar="NAME=VALUE", help="axis override for every task, e.g. T_max=2")
    p.add_argument("--tau-num", type=int, default=None)
    p.add_argument("--tau-acc", type=float, default=None)
    p.add_argument("--max-staleness", type=int, default=1, help="refuse data more than this many versions old")
    p.add_argument("--checkpoint-every", type=int, default=10)
    p.add_argument("--resume", default=None, help="a run directory to continue from its latest checkpoint")
    p.add_argument("--catalog-size", type=int, default=20_000)
    p.add_argument("--catalog", dest="catalog_dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--in-process", dest="ray", action="store_false",
                   help="one process, no Ray (default: the Ray actor system)")
    p.add_argument("--ray", dest="ray", action="store_true", help=argparse.SUPPRESS)  # the default; kept for scripts
    p.add_argument("--workers", "-w", type=int, default=2, help="env worker actors (default 2)")
    p.add_argument("--shards", "-s", type=int, default=2, help="catalog shard actors (default 2)")
    p.add_argument("--shopper", choices=("serve", "local", "none"), default="serve",
                   help="shopper phrasing: Ray Serve deployment (default), in-process, or none")
    p.add_argument("--shopper-backend", default="template", help="shopper backend: template (default) or llm")
    p.add_argument("--max-concurrent", type=int, default=64, help="episodes at once per env worker (default 64)")
    p.add_argument("--batch-size", type=int, default=None, help="rollouts per dispatch call (default: group size)")
    p.add_argument("--sync", dest="sync", action="store_const", const=True, default=None,
                   help="alternate rollouts and updates (the default on CPU)")
    p.add_argument("--overlap", dest="sync", action="store_const", const=False,
                   help="run the next step's rollouts during the update, within --max-staleness (default on CUDA)")
    p.add_argument("--engine-max-batch", type=int, default=256, help="turns per batched generate (default 256)")
    p.add_argument("--batch-wait-ms", type=float, default=5.0,
                   help="how long the engine gathers concurrent turns before generating (default 5)")
    p.add_argument("--engine-opt", action="append", metavar="KEY=VALUE",
                   help="engine option, repeatable: static_cache=true, compile=true (HF); "
                        "gpu_memory_utilization=0.4 (vLLM)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else a local cluster)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray cluster")
    p.add_argument("--no-live", action="store_true", help="plain log lines instead of the progress bar")
    p.set_defaults(func=cmd_train)


def config_from_args(args) -> TrainConfig:
    dapo = _kv(args.dapo, "dapo")
    if args.lr is not None:
        dapo["lr"] = args.lr
    if args.overlong_buffer is not None:
        dapo["overlong_buffer"] = args.overlong_buffer
    cur = {}
    if args.tau_num is not None:
        cur["tau_num"] = args.tau_num
    if args.tau_acc is not None:
        cur["tau_acc"] = args.tau_acc
    return TrainConfig(
        collection=args.collection, model=args.model, steps=args.steps, out=args.out, device=args.device,
        engine=args.engine, dtype=args.dtype, group_size=args.group_size, tasks_per_step=args.tasks_per_step,
        max_sampling_rounds=args.max_rounds, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
        prefill=args.prefill, lenient=args.lenient, tool_format=args.tool_format, warm_start=args.warm_start,
        warm_start_episodes=args.warm_start_episodes, warm_start_steps=args.warm_start_steps,
        catalog_size=args.catalog_size,
        catalog_dir=args.catalog_dir, seed=args.seed, axes=_kv(args.axis, "axis"), max_staleness=args.max_staleness,
        checkpoint_every=args.checkpoint_every, resume=args.resume, ray=args.ray, workers=args.workers,
        shards=args.shards, shopper=args.shopper, shopper_backend=args.shopper_backend,
        max_concurrent=args.max_concurrent, batch_size=args.batch_size, sync=args.sync,
        engine_max_batch=args.engine_max_batch, batch_wait_ms=args.batch_wait_ms,
        engine_opts=_kv(args.engine_opt, "engine-opt"), address=args.address, num_cpus=args.num_cpus,
        curriculum=cur, dapo=dapo, threads=args.threads,
    ).validate()


def cmd_train(args) -> int:
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not cfg.ray:
        trainer = Trainer(cfg)
        trainer.run()
        print(trainer.run_dir)
        return 0
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .train_ray import RayTrainer, format_step

    console = Console(stderr=True)
    trainer = RayTrainer(cfg, log=console.log)
    trainer.setup()
    if args.no_live or not console.is_terminal:
        trainer.run(on_step=lambda m: console.log(format_step(m, cfg.steps)))
    else:
        columns = (TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.description}"))
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("", total=cfg.steps, completed=trainer.step)

            def on_step(m):
                console.log(format_step(m, cfg.steps))
                bar.update(task, completed=m["step"], description=f"reward {m['reward_mean']:+.3f} "
                           f"v{m['engine_version']} {m['step_s']:.0f} s/step")

            trainer.run(on_step=on_step)
    print(trainer.run_dir)
    return 0


def _add_sft(sub) -> None:
    p = sub.add_parser("sft", help="supervised warm start on oracle trajectories (agent tokens only)",
                       description="Fine-tune on the episodes of an `ecomrlve run --policy oracle` run directory.")
    p.add_argument("run_dir", help="run directory (or parquet file) with messages/actions columns")
    p.add_argument("--model", default="smollm2")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--out", required=True, help="output directory (the model goes to OUT/model)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--prefill", default=None, help="assistant prefill (default: the model directory's chat.json, "
                   "else '{\"'); recorded in OUT/model/chat.json for train / eval / serve")
    p.add_argument("--tool-format", choices=("auto", "native", "compact", "json", "none"), default=None,
                   help="how tools are shown (default: the model directory's chat.json, else auto)")
    p.add_argument("--all-episodes", action="store_true", help="also train on episodes that were not correct")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sft)


def cmd_sft(args) -> int:
    if args.steps < 1 or args.batch_size < 1:
        print("error: --steps and --batch-size must be >= 1", file=sys.stderr)
        return 2
    try:
        run_sft(args.run_dir, args.model, args.steps, args.out, args.batch_size, args.lr, args.device, args.prefill,
                args.tool_format, not args.all_episodes, args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def add_train_commands(subparsers) -> None:
    """Register ``train`` and ``sft`` (ecomrlve.actors.cli calls this through OPTIONAL_COMMANDS);
    a subcommand name already taken is left alone."""
    taken = set(getattr(subparsers, "choices", {}) or {})
    if "train" not in taken:
        _add_train(subparsers)
    if "sft" not in taken:
        _add_sft(subparsers)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m ecomrlve.actors.train train ...``) until the CLI registers us."""
    parser = argparse.ArgumentParser(prog="ecomrlve")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_commands(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
