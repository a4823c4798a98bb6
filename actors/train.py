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

One `Trainer` runs the loop over a backend (same loop, checkpoint layout and metrics):

- `RayBackend` (default): the actor system of ``ecomrlve run`` (`ecomrlve.actors.system`:
  catalog shards, the shopper Serve deployment, the curriculum scheduler, the trajectory
  writer, W env workers) whose policy is an `EngineClient` of one `PolicyEngine`, a `Learner`
  actor, and ``ecomrlve run``'s `ecomrlve.actors.dispatch.Dispatcher` for the rounds (retry on
  worker death, records to the writer by reference); the next step's rollouts may overlap
  the update (bounded by ``--max-staleness``); metrics also go to the Ray dashboard.
- `LocalBackend` (``--in-process``): `rollout_groups` (`LLMPolicy.act_batch`, one batched
  generate per turn over all live episodes), `LearnerCore` and an `HFEngine` holding its
  own copy of the weights (so the weight-sync path is the same one Ray uses). No Ray at all.

Dynamic sampling: rounds are played until ``min_groups`` groups are informative by
`ecomrlve.policies.dapo.informative_groups` (the rule the learner's `filter_groups` applies)
or ``max_sampling_rounds`` ran.

Run directory: ``config.json``, ``metrics.jsonl`` (one line per step, `step_record` + the
learner's statistics + timings: the names are listed in docs/training.md), ``trajectories.parquet``
(the ``ecomrlve run`` schema, episode_id = task_id * 1000 + rollout), ``curriculum.json``,
``summary.md``, and the checkpoints::

    checkpoints/latest                 the name of the newest step directory
    checkpoints/step_NNNNNN/model/     the learner's weights (save_pretrained)
                           optimizer.pt
                           learner.json       version, optimizer steps, DAPO config
                           curriculum.json    no unplayed lease (an overlapped round is played first)
                           train_state.json   step, version, engine_checksum (+ policy_calls in-process)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ecomrlve.catalog_service.catalog import CatalogDir

from .config import Collection, add_command, arg, require_extra
from .run_dir import write_json_atomic, write_text_atomic
from .sft import SftConfig, ToolFormat, check_model, cmd_sft
from .learner import trajectory_of
from .rollout import EpisodeResult, is_error_reason, outcomes_of, rollout_groups

__all__ = ["TrainConfig", "TrainCommand", "Trainer", "LocalBackend", "RayBackend", "step_record",
           "format_step", "no_update_warning", "add_train_commands", "trainable"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- config


class TrainConfig(BaseModel):
    """What ``ecomrlve train`` trains, on what, and how; checked on construction (the model must
    resolve unless resuming). Fields marked ``cli=False`` are reachable from Python only."""

    model_config = ConfigDict(extra="forbid")

    collection: Collection = arg("C1", "collection, env id or comma-separated mix", short="-c")
    model: str = arg("smollm2", "smollm2, a local model directory, or a cached HF id")
    steps: int = arg(10, "optimizer steps", ge=1)
    out: str | None = arg(None, "run directory (default runs/<timestamp>)")
    device: str = arg("cpu", "cpu or cuda")
    engine: Literal["hf", "vllm"] = arg("hf", "generation engine")
    dtype: str | None = arg(None, "engine dtype: float32, bfloat16, float16 (default float32 on CPU, bfloat16 on CUDA)")
    group_size: int = arg(8, "rollouts per task (advantages are relative to the group)", short="-G", ge=2, le=1000)
    tasks_per_step: int = arg(4, "tasks per sampling round", ge=1)
    min_groups: int = arg(1, "informative groups wanted per step (dynamic sampling)", ge=1, cli=False)
    max_sampling_rounds: int = arg(3, "dynamic-sampling rounds per step", flag="--max-rounds", ge=1)
    max_new_tokens: int = arg(256, "tokens per reply", ge=1)
    temperature: float = arg(1.0, "sampling temperature", gt=0)
    # chat settings: None takes the model directory's chat.json, else the project default
    # (ecomrlve.policies.chat_settings); validation puts the resolved values in
    prefill: str | None = arg(None, "assistant prefill ('' for none; default: the model directory's chat.json, "
                                    "else '{\"')")
    lenient: bool | None = arg(None, "accept a JSON object followed by other text (default: the model directory's "
                                     "chat.json)")
    tool_format: ToolFormat | None = arg(None, "how tools are shown (default: the model directory's chat.json, "
                                               "else auto)")
    warm_start: Literal["auto", "always", "never"] = arg(
        "auto", "SFT on oracle episodes before the first step: auto when fewer than half of a greedy probe's "
                "replies are valid actions, always, or never")
    warm_start_episodes: int = arg(32, "oracle episodes of the warm start", ge=1)
    warm_start_steps: int = arg(40, "SFT steps of the warm start", ge=1)
    catalog_size: int = arg(20_000, "products of the synthetic catalog", ge=1)
    catalog_dir: CatalogDir = arg(None, "a catalog directory from `ecomrlve catalog build`", flag="--catalog")
    catalog_seed: int = arg(0, "synthetic catalog seed")
    seed: int = arg(0, "curriculum seed")
    axes: dict = arg(description="axis override for every task, e.g. T_max=2", flag="--axis", default_factory=dict)
    max_staleness: int = arg(1, "refuse data more than this many versions old", ge=0)
    checkpoint_every: int = arg(10, "steps between checkpoints", ge=1)
    keep_checkpoints: int = arg(2, "newest checkpoints kept on disk; older ones are deleted once a newer one "
                                   "is complete (0 keeps all)", ge=0)
    resume: str | None = arg(None, "a run directory to continue from its latest checkpoint")
    ray: bool = arg(True, "the Ray actor system (--in-process: one process, no Ray)", off="--in-process")
    workers: int = arg(2, "env worker actors", short="-w", ge=1)
    shards: int = arg(2, "catalog shard actors", short="-s", ge=1)
    shopper: Literal["serve", "local", "none"] = arg("serve", "shopper phrasing: Ray Serve deployment, in-process, "
                                                              "or none")
    shopper_backend: str = arg("template", "shopper backend: template or llm")
    max_concurrent: int = arg(64, "episodes at once per env worker", ge=1)
    batch_size: int | None = arg(None, "rollouts per dispatch call (default: the group size)", ge=1)
    sync: bool | None = arg(None, "alternate rollouts and updates (default on CPU); --overlap: run the next step's "
                                  "rollouts during the update, within --max-staleness (default on CUDA)", off="--overlap")
    engine_max_batch: int = arg(256, "turns per batched generate", ge=1)
    batch_wait_ms: float = arg(5.0, "how long the engine gathers concurrent turns before generating", ge=0)
    engine_opts: dict = arg(description="engine option: static_cache=true, compile=true (HF); "
                                        "gpu_memory_utilization=0.4 (vLLM)", flag="--engine-opt", default_factory=dict)
    address: str | None = arg(None, "Ray cluster address (default: RAY_ADDRESS, else a local cluster)")
    num_cpus: int | None = arg(None, "CPUs of a local Ray cluster", ge=1)
    curriculum: dict = arg(description="curriculum overrides: tau_num, tau_acc, ...", default_factory=dict, cli=False)
    dapo: dict = arg(description="any DAPOConfig field (lr, eps_high, overlong_buffer, ...)", default_factory=dict)
    threads: int | None = arg(None, "torch CPU threads", ge=1)

    @field_validator("axes")
    @classmethod
    def _known_axes(cls, v: dict) -> dict:
        from ecomrlve.envs import axes_for

        axes_for(0, v or None)  # names a bad axis
        return v

    @field_validator("dapo")
    @classmethod
    def _known_dapo_options(cls, v: dict) -> dict:
        from ecomrlve.policies.dapo import DAPOConfig

        unknown = set(v) - {f.name for f in dataclasses.fields(DAPOConfig)}
        if unknown:
            raise ValueError(f"unknown DAPO option(s): {', '.join(sorted(unknown))}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        if self.catalog_dir is None and self.catalog_size < self.shards:
            raise ValueError(f"catalog_size must be >= shards ({self.shards}), got {self.catalog_size}")
        if not self.resume:  # a resumed run loads its checkpoint's model
            check_model(self.model)
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
        return ChatSettings.for_model(src, self.prefill, self.tool_format, self.lenient)

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


def trainable(results: Sequence[EpisodeResult]) -> list[EpisodeResult]:
    """The episodes the update and the curriculum see: error episodes are left out (they
    are still written to the run's trajectories)."""
    return [r for r in results if not r.is_error]


def _make_catalog(cfg: TrainConfig):
    from ecomrlve.catalog_service import Catalog

    if cfg.catalog_dir:
        return Catalog.load(cfg.catalog_dir)
    return Catalog.synthetic(n_products=cfg.catalog_size, seed=cfg.catalog_seed)


# --------------------------------------------------------------------------- metrics


def step_record(summaries: Sequence[dict], learner_version: int) -> dict:
    """The rollout half of a step's metrics, from episode summaries (both backends write the
    same summary fields): rewards, success, invalid rate, policy tokens, staleness of the
    trained data, and the split of episode time between the LLM (awaiting the policy) and
    everything else (env, search, shopper, Ray)."""
    n = max(1, len(summaries))
    trained = [s for s in summaries if "version" in s]
    stale = [learner_version - int(s["version"]) for s in trained]
    wall = sum(float(s.get("wall_ms", 0.0)) for s in summaries)
    policy = sum(float(s.get("policy_ms", 0.0)) for s in summaries)
    env = sum(float(s.get("env_ms", 0.0)) for s in summaries)
    shopper = sum(float(s.get("shopper_ms", 0.0)) for s in summaries)
    turns = sum(int(s["turns"]) for s in summaries)
    return {
        "episodes": len(summaries),
        "reward_mean": sum(float(s["r_total"]) for s in summaries) / n,
        "success_rate": sum(bool(s["is_correct"]) for s in summaries) / n,
        "invalid_rate": sum(str(s["termination_reason"]).startswith("invalid") for s in summaries) / n,
        "error_episodes": sum(is_error_reason(s["termination_reason"]) for s in summaries),
        "turns_mean": turns / n,
        "rollout_policy_tokens": sum(int(s.get("policy_tokens", 0)) for s in summaries),
        "truncated_replies": sum(int(s.get("truncated_replies", 0)) for s in summaries),
        "staleness_max": max(stale, default=0),
        "staleness_mean": sum(stale) / len(stale) if stale else 0.0,
        "episode_ms_mean": wall / n,
        "llm_ms_per_turn": policy / max(1, turns),
        "env_ms_per_turn": env / max(1, turns),
        "shopper_ms_per_turn": shopper / max(1, turns),
        "outside_llm_share": 1.0 - policy / wall if wall > 0 else 0.0,
    }


def _samples(summaries: Sequence[dict]) -> list[tuple[int, float]]:
    """(group, reward) of the episodes that reach the learner (summaries with a reward)."""
    return [(int(s["group"]), float(s["reward"])) for s in summaries if "reward" in s]


def format_step(m: dict, steps: int) -> str:
    return (f"step {m['step']}/{steps}: reward {m['reward_mean']:+.3f} success {m['success_rate']:.0%} "
            f"invalid {m['invalid_rate']:.0%} | groups kept {m.get('groups_kept', 0)} dropped "
            f"{m.get('groups_dropped', 0)} stale {m.get('stale_dropped', 0)} (max staleness {m['staleness_max']}) | "
            f"{m['step_s']:.1f} s (waited {m['rollout_wait_s']:.1f} s on rollouts, update {m['update_s']:.1f} s) | "
            f"gen {m['generation_tokens_per_s']:.0f} tok/s, train {m['update_tokens_per_s']:.0f} tok/s | "
            f"outside the LLM {m['outside_llm_share']:.1%} | v{m['engine_version']}")


# --------------------------------------------------------------------------- the trainer


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


class Trainer:
    """One DAPO trainer over a backend (module docstring): `setup()` builds the backend
    (``cfg.ray``: `RayBackend`, else `LocalBackend`) and restores the latest checkpoint when
    resuming, `train_step()` runs one step, `checkpoint()` writes one, `run()` runs them
    all, `close()` writes the summary and tears the backend down."""

    def __init__(self, cfg: TrainConfig, log: Callable[[str], None] = print):
        self.cfg = cfg
        self.log = log
        self.step = 0
        self.metrics: list[dict] = []
        self.summaries: list[dict] = []
        self.backend: LocalBackend | RayBackend | None = None
        self.version, self.checksum = 0, ""  # the policy engine's weights
        self._closed = False

    def setup(self) -> "Trainer":
        cfg = self.cfg
        self.run_dir = _run_dir(cfg)
        ckpt = _latest_checkpoint(self.run_dir) if cfg.resume else None
        state = json.loads((ckpt / "train_state.json").read_text()) if ckpt else {}
        self.step = int(state.get("step", 0))
        if ckpt:
            model_src = str(ckpt / "model")
        else:
            from .warm_start import warm_start

            model_src = warm_start(cfg, self.run_dir, self.log, lambda: _make_catalog(cfg))
        self.backend = (RayBackend if cfg.ray else LocalBackend)(cfg, self.run_dir, self.log)
        self.backend.start(model_src, ckpt, state)
        self.version, self.checksum = self.backend.version, self.backend.checksum
        write_json_atomic(self.run_dir / "config.json", cfg.model_dump())
        if ckpt:
            self.log(f"resumed from {ckpt} at step {self.step}, version {self.backend.version}")
        return self

    # ---- one step
    def train_step(self) -> dict:
        """Rounds of ``tasks_per_step`` tasks x ``group_size`` rollouts until ``min_groups``
        groups are informative (`ecomrlve.policies.dapo.informative_groups`, the learner's
        own filter) or ``max_sampling_rounds`` ran; then one update and a weight push."""
        from ecomrlve.policies.dapo import informative_groups

        cfg = self.cfg
        t0 = time.perf_counter()
        summaries: list[dict] = []
        items: list = []
        rounds = 0
        while rounds == 0 or (len(informative_groups(_samples(summaries))) < cfg.min_groups
                              and rounds < cfg.max_sampling_rounds):
            s, it = self.backend.play_round()
            summaries += s
            items += it
            rounds += 1
        rollout_wait_s = time.perf_counter() - t0
        if self.backend.overlap and self.step + 1 < cfg.steps:
            self.backend.prefetch_round()  # plays on the current weights while the learner updates
        learner_version = self.backend.version
        upd = self.backend.update(items)
        self.version, self.checksum = upd["engine_version"], upd["engine_checksum"]
        windows = self.backend.windows()
        self.step += 1
        m = {"step": self.step, "rounds": rounds, **step_record(summaries, learner_version),
             **{k: v for k, v in upd.items() if not isinstance(v, (list, dict))},
             "step_s": time.perf_counter() - t0, "rollout_wait_s": rollout_wait_s,
             "generation_tokens_per_s": upd["generated_tokens"] / upd["engine_busy_s"] if upd["engine_busy_s"] else 0.0,
             "update_tokens_per_s": upd.get("tokens_per_s", 0.0), "overlap": self.backend.overlap,
             "retried_rollouts": self.backend.retried, "windows": {e: list(w) for e, w in windows.items()}}
        self.metrics.append(m)
        self.summaries += [{k: s[k] for k in SUMMARY_FIELDS} for s in summaries]
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(m) + "\n")
        if cfg.ray:  # the Ray metrics (dashboard); the in-process backend never imports Ray
            from .metrics import get_metrics

            metrics = get_metrics()
            metrics.train_step(m)
            metrics.levels(windows)
        if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
            self.checkpoint()
        return m

    def checkpoint(self) -> Path:
        """``checkpoints/step_NNNNNN/`` (layout in the module docstring), then
        ``checkpoints/latest`` names it, then all but the newest ``keep_checkpoints`` step
        directories are deleted. A crash at any point leaves ``latest`` naming a complete one."""
        d = self.run_dir / "checkpoints" / f"step_{self.step:06d}"
        extra = self.backend.save(d)  # model/, optimizer.pt, learner.json, curriculum.json
        write_json_atomic(d / "train_state.json", {"step": self.step, "version": self.backend.version,
                                             "engine_checksum": self.backend.checksum, **extra})
        write_text_atomic(self.run_dir / "checkpoints" / "latest", d.name + "\n")
        prune_checkpoints(d.parent, self.cfg.keep_checkpoints, keep=d.name)
        return d

    def run(self, on_step: Callable[[dict], None] | None = None) -> list[dict]:
        if self.backend is None:
            self.setup()
        try:
            while self.step < self.cfg.steps:
                m = self.train_step()
                if on_step is not None:
                    on_step(m)
                else:
                    self.log(format_step(m, self.cfg.steps))
                warning = no_update_warning(m)
                if warning:
                    self.log(warning)
        finally:
            self.close()
        return self.metrics

    def close(self) -> None:
        if self.backend is None or self._closed:
            return
        self._closed = True
        from . import run_dir as rd

        try:
            curriculum = self.backend.finish()
            rd.write_summary(self.run_dir, self.summaries, curriculum,
                             {"policy": f"llm:{self.cfg.model} (DAPO)", "collection": self.cfg.collection,
                              "episodes": len(self.summaries), "retried_tasks": self.backend.retried})
            rd.write_plots(self.run_dir, self.summaries)
        except Exception as exc:  # noqa: BLE001 - the summary is a convenience; teardown goes on
            self.log(f"summary not written: {exc}")
        finally:
            self.backend.shutdown()


SUMMARY_FIELDS = ("episode_id", "env_id", "difficulty", "seed", "r_total", "is_correct", "turns",
                  "termination_reason")


# --------------------------------------------------------------------------- backends
#
# A backend plays rounds and updates the weights; the Trainer owns the loop around it.
#   start(ckpt, state)   build everything (from the checkpoint when resuming)
#   play_round()         lease tasks_per_step tasks, play each group_size times, record and
#                        report them -> (summaries, learner items); summaries carry the
#                        fields of `step_record` and, for trainable episodes, reward/group/version
#   prefetch_round()     start the next round now (overlap; Ray only)
#   update(items)        one learner update + weight push -> learner stats + sync_s,
#                        engine_version, engine_checksum, generated_tokens, engine_busy_s
#   windows()            the curriculum's windows {env_id: (l, h)}
#   save(d)              model/, optimizer.pt, learner.json, curriculum.json into d; returns
#                        extra train_state fields
#   finish()             write what is pending; the curriculum state
#   shutdown()


class LocalBackend:
    """In-process (``--in-process``): `make_env` + `LLMPolicy.act_batch` through
    `rollout_groups`, a `LearnerCore` and an `HFEngine` holding its own copy of the weights
    (the weight-sync path Ray uses); the curriculum as a plain object. No Ray."""

    overlap = False
    retried = 0

    def __init__(self, cfg: TrainConfig, run_dir: Path, log: Callable[[str], None]):
        self.cfg, self.run_dir, self.log = cfg, run_dir, log
        self.writer = None

    def start(self, model_src: str, ckpt: Path | None, state: dict) -> None:
        import torch

        from ecomrlve.envs import resolve_envs
        from ecomrlve.policies.codec import ChatCodec
        from ecomrlve.policies.engines import HFEngine
        from ecomrlve.policies.llm_policy import LLMPolicy
        from ecomrlve.policies.models import load_model
        from ecomrlve.scheduler import Curriculum, CurriculumConfig

        from .learner import LearnerCore
        from .run_dir import TrajectoryWriterImpl

        cfg = self.cfg
        if cfg.engine != "hf":
            raise ValueError("the in-process trainer runs the hf engine; drop --in-process for vllm")
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        t0 = time.perf_counter()
        model, tok = load_model(model_src, device=cfg.device, dtype="float32")
        self.learner = LearnerCore(model, tok, cfg.dapo_config(), cfg.device, cfg.max_staleness)
        emodel, _ = load_model(model_src, device=cfg.device, dtype=cfg.dtype)
        self.engine = HFEngine(emodel, tok, device=cfg.device, **cfg.engine_opts)
        self.codec = ChatCodec(tok, tool_format=cfg.tool_format, prefill=cfg.prefill, lenient=cfg.lenient)
        self.policy = LLMPolicy(self.engine, codec=self.codec, temperature=cfg.temperature,
                                max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
        self.catalog = _make_catalog(cfg)
        if ckpt:
            self.curriculum = Curriculum.from_json((ckpt / "curriculum.json").read_text())
            self.learner.load_optimizer(ckpt)
            self.policy.calls = int(state.get("policy_calls", 0))
        else:
            ccfg = CurriculumConfig.from_dict({"first_seed": cfg.seed * 1_000_000, **cfg.curriculum})
            self.curriculum = Curriculum(resolve_envs(cfg.collection), ccfg, seed=cfg.seed)
        self.sync_s = self._sync()
        self._engine_stats = self.engine.stats()
        self.writer = TrajectoryWriterImpl(str(self.run_dir), append=bool(ckpt))
        self.log(f"model {cfg.model}: learner + engine ready in {time.perf_counter() - t0:.1f} s; "
                 f"run dir {self.run_dir}")

    @property
    def version(self) -> int:
        return int(self.engine.version)

    @property
    def checksum(self) -> str:
        return self.engine.checksum

    def _sync(self) -> float:
        t0 = time.perf_counter()
        sd, version, checksum = self.learner.weights(dtype=self.engine.dtype)
        self.engine.load_weights(sd, version, checksum)
        return time.perf_counter() - t0

    def play_round(self) -> tuple[list[dict], list]:
        cfg = self.cfg
        tasks = [t.as_dict() for t in self.curriculum.lease(cfg.tasks_per_step)]
        t0 = time.perf_counter()
        results = rollout_groups(self.policy, self.catalog, tasks, cfg.group_size, cfg.axes)
        wall_ms = (time.perf_counter() - t0) * 1000 / max(1, len(results))
        ok = trainable(results)
        self.curriculum.report(outcomes_of([{**r.task, "rollout": r.rollout} for r in ok],
                                           [{**r.task, **r.reward} for r in ok]))
        write_text_atomic(self.run_dir / "curriculum.json", self.curriculum.to_json())
        self.writer.write([r.record(f"llm:{cfg.model}") for r in results])
        trajs = {r.episode_id: trajectory_of(r.tokens, r.task, r.reward, cfg.max_new_tokens, self.learner.cfg)
                 for r in ok}
        summaries = []
        for r in results:
            s = {"episode_id": r.episode_id, "env_id": r.task["env_id"], "difficulty": int(r.task["difficulty"]),
                 "seed": int(r.task["seed"]), "r_total": float(r.reward.get("r_total", -1.0)),
                 "is_correct": bool(r.reward.get("is_correct", False)),
                 "termination_reason": str(r.reward.get("termination_reason", "")), "turns": int(r.turns),
                 "wall_ms": wall_ms, "policy_ms": r.gen_s * 1000, "env_ms": r.env_s * 1000}
            t = trajs.get(r.episode_id)
            if t is not None:
                s.update(reward=t.reward, group=int(t.group), version=int(t.version), policy_tokens=int(t.n_tokens),
                         truncated_replies=int(sum(t.truncated)))
            summaries.append(s)
        return summaries, list(trajs.values())

    def prefetch_round(self) -> None:  # never called: overlap is False
        raise NotImplementedError

    def update(self, items: list) -> dict:
        upd = self.learner.update(items)
        sync_s = self._sync() if upd["stepped"] else 0.0
        stats = self.engine.stats()
        gen = {k: stats.get(k, 0) - self._engine_stats.get(k, 0) for k in ("generated_tokens", "generate_s")}
        self._engine_stats = stats
        return {**upd, "sync_s": sync_s, "engine_version": self.version, "engine_checksum": self.checksum,
                "generated_tokens": gen["generated_tokens"], "engine_busy_s": gen["generate_s"]}

    def windows(self) -> dict:
        return self.curriculum.windows()

    def save(self, d: Path) -> dict:
        self.learner.save(d, self.cfg.chat_settings())
        write_text_atomic(d / "curriculum.json", self.curriculum.to_json())
        return {"policy_calls": self.policy.calls}

    def finish(self) -> dict:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        return self.curriculum.state()

    def shutdown(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class RayBackend:
    """The actor system of ``ecomrlve run`` (`ActorSystem`: catalog shards, shopper, the
    `CurriculumScheduler`, the trajectory writer, W `EnvWorker`s) whose policy is an
    `EngineClient` of one `PolicyEngine`, plus a `Learner` actor; rounds go through the
    run's `Dispatcher` (``run_rollouts``: summaries, records to the writer, learner items by
    reference, a dead worker's rollouts run again). With ``overlap`` the next round plays
    during the update, bounded by ``max_staleness``."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, log: Callable[[str], None]):
        self.cfg, self.run_dir, self.log = cfg, run_dir, log
        self.overlap = cfg.overlap()
        self.system = self.dispatcher = self.engine = self.learner = None
        self._ahead: list | None = None  # episode ids of the next step's round, in flight
        self._pending: list[dict] = []

    @property
    def retried(self) -> int:
        return self.dispatcher.retried if self.dispatcher is not None else 0

    def start(self, model_src: str, ckpt: Path | None, state: dict) -> None:
        import ray

        from ecomrlve.envs import resolve_envs

        from .ray_session import init_ray
        from .dispatch import Dispatcher
        from .learner import Learner
        from .policy_engine import EngineClient, PolicyEngine
        from .system import ActorSystem, SystemSpec

        cfg = self.cfg
        init_ray(address=cfg.address, num_cpus=cfg.num_cpus)
        if ckpt:  # the scheduler actor restores from run_dir/curriculum.json: make it the checkpoint's
            write_text_atomic(self.run_dir / "curriculum.json", (ckpt / "curriculum.json").read_text())
        t0 = time.perf_counter()
        gpu = cfg.device.startswith("cuda")
        total = float(ray.cluster_resources().get("CPU", 2.0))
        unit = round(max(0.1, min(1.0, total * 0.25)), 3)  # logical CPUs of the engine and of the learner
        threads = cfg.threads
        if threads is None and not gpu and self.overlap:
            # generation and update run at the same time: half the cores each (on 2 cores,
            # 2 + 2 threads made a step 1.7x slower than 1 + 1: measured, benchmarks/learner.py)
            threads = max(1, (os.cpu_count() or 2) // 2)
        self.engine = PolicyEngine.options(num_gpus=0.5 if gpu else 0, num_cpus=unit).remote(
            model_src, device=cfg.device, engine=cfg.engine, dtype=cfg.dtype,
            temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, prefill=cfg.prefill,
            tool_format=cfg.tool_format, lenient=cfg.lenient, max_batch=cfg.engine_max_batch,
            batch_wait_ms=cfg.batch_wait_ms, threads=threads, engine_kwargs=dict(cfg.engine_opts))
        self.learner = Learner.options(num_gpus=0.5 if gpu else 0, num_cpus=unit).remote(
            model_src, cfg.dapo_config().as_dict(), cfg.device, cfg.max_staleness, str(ckpt) if ckpt else None,
            None, threads)
        spec = SystemSpec(env_ids=resolve_envs(cfg.collection), workers=cfg.workers, shards=cfg.shards,
                          catalog_size=cfg.catalog_size, catalog_dir=cfg.catalog_dir, catalog_seed=cfg.catalog_seed,
                          seed=cfg.seed, max_concurrent=cfg.max_concurrent, shopper=cfg.shopper,
                          shopper_backend=cfg.shopper_backend, checkpoint_every=cfg.checkpoint_every,
                          curriculum=dict(cfg.curriculum))
        client = EngineClient(self.engine, name=f"llm:{cfg.model}", max_new_tokens=cfg.max_new_tokens,
                              dapo=cfg.dapo_config().as_dict())
        self.system = ActorSystem(spec).start(self.run_dir, client, self.log, append=bool(ckpt),
                                              reserved_cpus=0 if gpu else 2 * unit)
        self.dispatcher = Dispatcher(self.system, cfg.dispatch_size(), cfg.max_concurrent, "run_rollouts",
                                     log=self.log)
        # tasks leased before the checkpoint but never played (the round that overlapped the
        # last update) run first, so the curriculum never keeps an orphan lease
        self._pending = ray.get(self.system.scheduler.pending.remote()) if ckpt else []
        push = ray.get(self.learner.push.remote([self.engine], cfg.dtype))
        self.version, self.checksum = int(push["version"]), push["checksum"]
        self._engine_stats = ray.get(self.engine.info.remote())
        self.log(f"train: engine + learner ({cfg.model}, {cfg.device}, {cfg.engine}) and {cfg.workers} env workers "
                 f"up in {time.perf_counter() - t0:.1f} s; weights v{self.version} {self.checksum[:12]}; "
                 f"{'asynchronous' if self.overlap else 'synchronous'} rollouts; run dir {self.run_dir}")

    def _submit_round(self) -> list[int]:
        import ray

        cfg = self.cfg
        tasks, self._pending = self._pending[:cfg.tasks_per_step], self._pending[cfg.tasks_per_step:]
        if len(tasks) < cfg.tasks_per_step:
            tasks += ray.get(self.system.scheduler.lease.remote(cfg.tasks_per_step - len(tasks)))
        axes = {"axes": dict(cfg.axes)} if cfg.axes else {}
        rollouts = [{**t, "rollout": g, "episode_id": int(t["task_id"]) * 1_000 + g, **axes}
                    for t in tasks for g in range(cfg.group_size)]
        self.dispatcher.submit(rollouts)
        return [r["episode_id"] for r in rollouts]

    def play_round(self) -> tuple[list[dict], list]:
        ids, self._ahead = (self._ahead or self._submit_round()), None
        calls = self.dispatcher.wait(ids)
        return [self.dispatcher.done[e] for e in ids], [c.learner_items for c in calls]

    def prefetch_round(self) -> None:
        self._ahead = self._submit_round()

    def update(self, items: list) -> dict:
        import ray

        upd = ray.get(self.learner.update_refs.remote(items))
        sync_s = 0.0
        if upd["stepped"]:
            t0 = time.perf_counter()
            push = ray.get(self.learner.push.remote([self.engine], self.cfg.dtype))
            sync_s = time.perf_counter() - t0
            self.version, self.checksum = int(push["version"]), push["checksum"]
        engine = ray.get(self.engine.info.remote())
        gen = {k: engine.get(k, 0) - self._engine_stats.get(k, 0) for k in ("generated_tokens", "generate_s")}
        self._engine_stats = engine
        return {**upd, "sync_s": sync_s, "engine_version": self.version, "engine_checksum": self.checksum,
                "generated_tokens": gen["generated_tokens"], "engine_busy_s": gen["generate_s"]}

    def windows(self) -> dict:
        import ray

        levels = ray.get(self.system.scheduler.summary.remote())["levels"]
        return {e: (v["l"], v["h"]) for e, v in levels.items()}

    def save(self, d: Path) -> dict:
        """A round in flight (the overlap) is played to the end first, so the curriculum
        saved has no unplayed lease and its episodes are in the parquet; the next step
        trains on it."""
        import ray

        if self._ahead is not None:
            self.dispatcher.wait(self._ahead)
        ray.get(self.learner.save.remote(str(d), self.cfg.chat_settings()))
        ray.get(self.system.scheduler.checkpoint.remote())
        write_text_atomic(d / "curriculum.json", (self.run_dir / "curriculum.json").read_text())
        return {}

    def finish(self) -> dict:
        import ray

        self.dispatcher.drain()
        ray.get(self.system.writer.close.remote())
        return ray.get(self.system.scheduler.state.remote())

    def shutdown(self) -> None:
        import ray

        if self.system is not None:
            self.system.shutdown()
            self.system = None
        for a in (self.engine, self.learner):
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001
                pass
        self.engine = self.learner = None


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


def prune_checkpoints(checkpoints: Path, n: int, keep: str) -> list[str]:
    """Delete all but the newest ``n`` ``step_NNNNNN`` directories under ``checkpoints``
    (``n == 0``: delete none). ``keep`` (the one ``latest`` names) is never deleted. A
    checkpoint of SmolLM2-135M is 1.6 GB (fp32 weights + AdamW state): without this a run of
    1000 steps checkpointed every 10 would fill a disk. Returns the deleted names."""
    if n == 0:
        return []
    steps = sorted(p.name for p in checkpoints.glob("step_*") if p.is_dir())
    doomed = [name for name in steps[:-n] if name != keep]
    for name in doomed:
        shutil.rmtree(checkpoints / name)
    return doomed


def _latest_checkpoint(run_dir: Path) -> Path | None:
    latest = run_dir / "checkpoints" / "latest"
    if not latest.exists():
        raise ValueError(f"{run_dir} has no checkpoints/latest to resume from")
    d = run_dir / "checkpoints" / latest.read_text().strip()
    if not (d / "model").is_dir():
        raise ValueError(f"checkpoint {d} has no model directory")
    return d


class TrainCommand(TrainConfig):
    """``ecomrlve train``: a `TrainConfig` plus shorthands for common DAPO and curriculum options
    and the display."""

    lr: float | None = arg(None, "AdamW learning rate (default 1e-5; same as --dapo lr=...)", gt=0)
    overlong_buffer: int | None = arg(None, "soft overlong penalty window in tokens", ge=0)
    tau_num: int | None = arg(None, "curriculum: outcomes at h per check (default 32)", ge=1)
    tau_acc: float | None = arg(None, "curriculum: accuracy to raise h (default 0.9)", gt=0, le=1)
    live: bool = arg(True, "the progress bar (--no-live: plain log lines)")

    @model_validator(mode="after")
    def _shorthands(self) -> "TrainCommand":
        for target, names in ((self.dapo, ("lr", "overlong_buffer")), (self.curriculum, ("tau_num", "tau_acc"))):
            for name in names:
                if getattr(self, name) is not None:
                    target[name] = getattr(self, name)
        return self


def cmd_train(cfg: TrainCommand) -> int:
    require_extra(("torch", "transformers"), "llm", "`ecomrlve train`")
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    trainer = Trainer(cfg, log=console.log)
    trainer.setup()
    if not cfg.live or not console.is_terminal:
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


def add_train_commands(subparsers) -> None:
    """Register ``train`` and ``sft``."""
    add_command(subparsers, "train", TrainCommand, cmd_train,
                help="DAPO training of an LLM policy with the adaptive curriculum",
                description="Train an LLM agent with DAPO on a collection; writes a run directory with metrics, "
                            "trajectories, curriculum and checkpoints.")
    add_command(subparsers, "sft", SftConfig, cmd_sft,
                help="supervised warm start on oracle trajectories (agent tokens only)",
                description="Fine-tune on the episodes of an `ecomrlve run --policy oracle` run directory.")
