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

import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ecomrlve.catalog_service.catalog import CatalogDir

from .config import add_command, arg, require_extra
from .rollout import EpisodeResult, is_error_reason, outcomes_of, rollout_groups, summary_of

__all__ = ["TrainConfig", "TrainCommand", "SftConfig", "Trainer", "to_trajectory", "add_train_commands",
           "sft_examples", "run_sft", "trainable"]

MAX_TURNS = 64
log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- config


def _locate(model: str) -> None:
    """ValueError naming ``model`` when `model` does not resolve (ecomrlve.policies.models)."""
    from ecomrlve.policies.models import ModelNotFound, locate_model

    try:
        locate_model(model)
    except ModelNotFound as exc:
        raise ValueError(f"model: {exc}") from None


TOOL_FORMATS = Literal["auto", "native", "compact", "json", "none"]


class TrainConfig(BaseModel):
    """What ``ecomrlve train`` trains, on what, and how; checked on construction (the model must
    resolve unless resuming). Fields marked ``cli=False`` are reachable from Python only."""

    model_config = ConfigDict(extra="forbid")

    collection: str = arg("C1", "collection, env id or comma-separated mix", short="-c")
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
    prefill: str = arg('{"', "assistant prefill ('' for none)")
    lenient: bool = arg(False, "accept a JSON object followed by other text")
    tool_format: TOOL_FORMATS = arg("auto", "how tools are shown to the model")
    catalog_size: int = arg(20_000, "products of the synthetic catalog", ge=1)
    catalog_dir: CatalogDir = arg(None, "a catalog directory from `ecomrlve catalog build`", flag="--catalog")
    catalog_seed: int = arg(0, "synthetic catalog seed")
    seed: int = arg(0, "curriculum seed")
    axes: dict = arg(description="axis override for every task, e.g. T_max=2", flag="--axis", default_factory=dict)
    max_staleness: int = arg(1, "refuse data more than this many versions old", ge=0)
    checkpoint_every: int = arg(10, "steps between checkpoints", ge=1)
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

    @field_validator("collection")
    @classmethod
    def _known_collection(cls, v: str) -> str:
        from ecomrlve.envs import resolve_envs

        resolve_envs(v)
        return v

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
            _locate(self.model)
        return self

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


# --------------------------------------------------------------------------- in-process trainer


class Trainer:
    """The in-process train loop (see module docstring). `run()` returns the final metrics."""

    def __init__(self, cfg: TrainConfig, log: Callable[[str], None] = print):
        self.cfg = cfg
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
        model_src = str(ckpt / "model") if ckpt else cfg.model
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
        self.catalog = _make_catalog(cfg)
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
        _write_json(self.run_dir / "config.json", cfg.model_dump())
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

            res = rollout_groups(self.policy, self.catalog, tasks, cfg.group_size, cfg.axes, on_turn, MAX_TURNS)
            gen_s += timing[0]
            env_s += timing[1]
            ok = trainable(res)
            self.curriculum.report(outcomes_of([{**r.task, "rollout": r.rollout} for r in ok],
                                               [{**r.task, **r.reward} for r in ok]))
            results += res
            trajs += [to_trajectory(r, cfg.max_new_tokens, dcfg) for r in trainable(res)]
            kept, _ = filter_groups(trajs)
            if len({t.group for t in kept}) >= cfg.min_groups:
                break
        rollout_s = time.perf_counter() - t0
        upd = self.learner.update(trajs)
        sync = self._sync() if upd["stepped"] else {"sync_s": 0.0, "checksum": self.engine.checksum,
                                                     "version": self.engine.version}
        recs = [r.record(f"llm:{cfg.model}") for r in results]
        if self.writer is not None:
            self.writer.write(recs)
        self.summaries += [summary_of(r) for r in recs]
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
        self.learner.save(d)
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
            lr: float = 5e-5, device: str = "cpu", prefill: str = '{"', tool_format: str = "auto",
            only_correct: bool = True, seed: int = 0, max_tokens: int = 8192, log: Callable[[str], None] = print,
            model_obj=None, tokenizer=None) -> dict:
    """Supervised warm start on oracle episodes; only agent tokens are in the loss."""
    import random

    import torch

    from ecomrlve.policies.codec import ChatCodec
    from ecomrlve.policies.dapo import _micro_batches, make_batch, sft_loss
    from ecomrlve.policies.models import load_model, save_model

    if model_obj is None:
        model_obj, tokenizer = load_model(model, device=device, dtype="float32")
    codec = ChatCodec(tokenizer, tool_format=tool_format, prefill=prefill)
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
        d = save_model(model_obj, tokenizer, Path(out) / "model")
        _write_json(Path(out) / "sft.json", {**result, "run_dir": str(run_dir), "model": model, "lr": lr,
                                               "batch_size": batch_size, "prefill": prefill})
        result["model_dir"] = str(d)
        log(f"sft: model saved to {d} (use --model {d})")
    return result


# --------------------------------------------------------------------------- CLI


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


class SftConfig(BaseModel):
    """``ecomrlve sft``: supervised warm start on the correct episodes of an oracle run."""

    model_config = ConfigDict(extra="forbid")

    run_dir: str = arg(description="run directory (or parquet file) with messages/actions columns", positional=True)
    model: str = arg("smollm2", "smollm2, a local model directory, or a cached HF id")
    steps: int = arg(100, "optimizer steps", ge=1)
    out: str = arg(description="output directory (the model goes to OUT/model)")
    batch_size: int = arg(4, "episodes per step", ge=1)
    lr: float = arg(5e-5, "AdamW learning rate", gt=0)
    device: str = arg("cpu", "cpu or cuda")
    prefill: str = arg('{"', "assistant prefill; must match the prefill used at train/eval time")
    tool_format: TOOL_FORMATS = arg("auto", "how tools are shown to the model")
    all_episodes: bool = arg(False, "also train on episodes that were not correct")
    seed: int = arg(0, "shuffling seed")

    @field_validator("model")
    @classmethod
    def _model_resolves(cls, v: str) -> str:
        _locate(v)
        return v


def cmd_sft(cfg: SftConfig) -> int:
    require_extra(("torch", "transformers"), "llm", "`ecomrlve sft`")
    try:
        run_sft(cfg.run_dir, cfg.model, cfg.steps, cfg.out, cfg.batch_size, cfg.lr, cfg.device, cfg.prefill,
                cfg.tool_format, not cfg.all_episodes, cfg.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
