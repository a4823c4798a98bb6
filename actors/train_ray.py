"""The Ray runner of ``ecomrlve train``: the rollout system of ``ecomrlve run`` with an LLM
agent and a DAPO learner.

    scheduler -> env workers -> PolicyEngine -> env workers -> Learner -> weight sync

Actors:

- everything `ecomrlve.actors.driver.Driver` builds for ``ecomrlve run``: catalog shards and their
  router, the shopper Serve deployment, the `CurriculumScheduler`, the `TrajectoryWriter` and
  W `EnvWorker`s, whose policy is an `EngineClient`: every agent turn is an ``act`` call to
- one `PolicyEngine` (HF or vLLM) that micro-batches the concurrent turns of all live
  episodes into one generate, and keeps each episode's token record (token-in/token-out);
- the `Learner`, which receives trajectories as ObjectRefs (the driver never fetches them)
  and pushes versioned, checksummed weights to the engine through the object store.

A *round* leases ``tasks_per_step`` tasks and plays each ``group_size`` times (the rollouts
carry ``rollout``, ``episode_id = task_id * 1000 + rollout`` and the axis overrides). When
an `EnvWorker` finishes an episode, `EngineClient.finish` pops its token record and builds
the learner `Trajectory` in the worker; the worker reports outcomes to the curriculum
(rollout 0 carries the task id) and returns summaries, records (to the writer) and
trajectories (to the learner), each as its own object.

Dynamic sampling: a step collects rounds until ``min_groups`` groups have reward spread (at
most ``max_sampling_rounds``); the learner drops the groups without spread.

Asynchronous overlap (``--overlap``; the default on CUDA, with ``max_staleness >= 1``): once a
step's rollouts are in, the next step's first round is dispatched before the update, so it
plays on the current weights while the learner computes the next ones. The new weights reach
the engine between two decode batches, so an episode may mix versions; its trajectory
carries the oldest, and the learner refuses any older than ``max_staleness`` versions. A
checkpoint waits for that round (so a checkpoint never holds an unplayed lease); on resume,
tasks the curriculum still lists as leased and unplayed run first.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .train import TrainConfig, _latest_checkpoint, _run_dir, _write_json, _write_text, no_update_warning

__all__ = ["RayTrainer", "train_ray", "informative_groups", "step_record"]

MAX_DISPATCH_FAILURES = 5


def informative_groups(summaries: Sequence[dict]) -> int:
    """Groups (task ids) with at least two trajectories whose rewards differ: the ones
    DAPO learns from (`ecomrlve.policies.dapo.filter_groups` keeps exactly these)."""
    by_group: dict[int, list[float]] = {}
    for s in summaries:
        if "reward" in s:
            by_group.setdefault(int(s["group"]), []).append(float(s["reward"]))
    return sum(1 for r in by_group.values() if len(r) >= 2 and max(r) != min(r))


def step_record(summaries: Sequence[dict], learner_version: int) -> dict:
    """Per-step figures from the episode summaries: rewards, success, invalid rate, policy
    tokens, staleness of the trained data, and the split of episode time between the LLM
    (awaiting the policy engine) and everything else (env, search, shopper, Ray)."""
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
        "error_episodes": sum(str(s["termination_reason"]).startswith("error") for s in summaries),
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


@dataclass
class _Call:
    worker: int
    tasks: list
    summaries: Any
    records: Any
    trajectories: Any
    failures: int = 0


@dataclass
class _Round:
    calls: list = field(default_factory=list)


class RayTrainer:
    """`setup()` builds the actors, `train_step()` runs one step, `run()` all of them;
    `close()` writes the summary and tears the actors down."""

    def __init__(self, cfg: TrainConfig, log: Callable[[str], None] = print):
        self.cfg = cfg.validate()
        self.log = log
        self.step = 0
        self.metrics: list[dict] = []
        self.summaries: list[dict] = []
        self._ahead: _Round | None = None  # the next step's first round, in flight
        self._ready: tuple[list, list] | None = None  # ... or already collected (by a checkpoint)
        self._pending: list[dict] = []
        self._next_worker = 0
        self._write_refs: list = []
        self.retried = 0
        self.overlap = cfg.overlap()
        self.driver = None
        self.engine = self.learner = None

    # ------------------------------------------------------------------ setup
    def setup(self) -> "RayTrainer":
        import ray

        from .cli import init_ray
        from .driver import Driver, RunConfig
        from .learner import Learner
        from .policy_engine import EngineClient, PolicyEngine

        cfg = self.cfg
        init_ray(address=cfg.address, num_cpus=cfg.num_cpus)
        self.run_dir = _run_dir(cfg)
        ckpt = _latest_checkpoint(self.run_dir) if cfg.resume else None
        if ckpt:  # the scheduler actor restores from run_dir/curriculum.json: make it the checkpoint's
            _write_text(self.run_dir / "curriculum.json", (ckpt / "curriculum.json").read_text())
            state = json.loads((ckpt / "train_state.json").read_text())
            self.step = int(state["step"])
        _write_json(self.run_dir / "config.json", dataclasses.asdict(cfg))
        t0 = time.perf_counter()
        gpu = cfg.device.startswith("cuda")
        total = float(ray.cluster_resources().get("CPU", 2.0))
        unit = round(max(0.1, min(1.0, total * 0.25)), 3)  # logical CPUs of the engine and of the learner
        from .warm_start import warm_start

        model_src = str(ckpt / "model") if ckpt else warm_start(cfg, self.run_dir, self.log)
        threads = cfg.threads
        if threads is None and not gpu and self.overlap:
            # generation and update run at the same time: half the cores each (on 2 cores,
            # 2 + 2 threads made a step 1.7x slower than 1 + 1: measured, benchmarks/learner.py)
            threads = max(1, (os.cpu_count() or 2) // 2)
        self.engine = PolicyEngine.options(num_gpus=0.5 if gpu else 0, num_cpus=unit).remote(
            model_src, device=cfg.device, engine=cfg.engine, dtype=cfg.dtype, temperature=cfg.temperature,
            max_new_tokens=cfg.max_new_tokens, prefill=cfg.prefill, tool_format=cfg.tool_format, lenient=cfg.lenient,
            max_batch=cfg.engine_max_batch, batch_wait_ms=cfg.batch_wait_ms, threads=threads,
            engine_kwargs=dict(cfg.engine_opts))
        self.learner = Learner.options(num_gpus=0.5 if gpu else 0, num_cpus=unit).remote(
            model_src, cfg.dapo_config().as_dict(), cfg.device, cfg.max_staleness, str(ckpt) if ckpt else None,
            None, threads)
        run_cfg = RunConfig(collection=cfg.collection, episodes=1, workers=cfg.workers, shards=cfg.shards,
                            catalog_size=cfg.catalog_size, catalog_dir=cfg.catalog_dir, catalog_seed=cfg.catalog_seed,
                            seed=cfg.seed, batch_size=cfg.dispatch_size(), max_concurrent=cfg.max_concurrent,
                            shopper=cfg.shopper, shopper_backend=cfg.shopper_backend, curriculum=dict(cfg.curriculum))
        self.driver = Driver(run_cfg)
        client = EngineClient(self.engine, name=f"llm:{cfg.model}", max_new_tokens=cfg.max_new_tokens,
                              dapo=cfg.dapo_config().as_dict())
        self.driver.start(self.log, policy=client, run_dir=self.run_dir, append=bool(ckpt),
                          reserved_cpus=0 if gpu else 2 * unit)
        self.scheduler, self.workers, self.writer = self.driver.scheduler, self.driver.workers, self.driver.writer
        # tasks leased before the checkpoint but never played (the round that overlapped the
        # last update) run first, so the curriculum never keeps an orphan lease
        self._pending = ray.get(self.scheduler.pending.remote()) if ckpt else []
        # tasks leased before the checkpoint but never played (the round that overlapped the
        # last update) run first, so the curriculum never keeps an orphan lease
        self._pending = ray.get(self.scheduler.pending.remote()) if ckpt else []
        push = ray.get(self.learner.push.remote([self.engine], cfg.dtype))
        self.version = int(push["version"])
        self.checksum = push["checksum"]
        self._engine_stats = ray.get(self.engine.info.remote())
        self.log(f"train: engine + learner ({cfg.model}, {cfg.device}, {cfg.engine}) and {cfg.workers} env workers "
                 f"up in {time.perf_counter() - t0:.1f} s; weights v{self.version} {self.checksum[:12]}; "
                 f"{'asynchronous' if self.overlap else 'synchronous'} rollouts; run dir {self.run_dir}")
        return self

    # ------------------------------------------------------------------ rounds
    def _dispatch(self, tasks: list[dict], failures: int = 0) -> list[_Call]:
        calls = []
        size = self.cfg.dispatch_size()
        for i in range(0, len(tasks), size):
            batch = tasks[i:i + size]
            w = self._next_worker % len(self.workers)
            self._next_worker += 1
            s_ref, r_ref, t_ref = self.workers[w].run_rollouts.remote(batch)
            calls.append(_Call(w, batch, s_ref, r_ref, t_ref, failures))
        return calls

    def _lease_round(self) -> _Round:
        import ray

        cfg = self.cfg
        tasks, self._pending = self._pending[:cfg.tasks_per_step], self._pending[cfg.tasks_per_step:]
        if len(tasks) < cfg.tasks_per_step:
            tasks += ray.get(self.scheduler.lease.remote(cfg.tasks_per_step - len(tasks)))
        axes = {"axes": dict(cfg.axes)} if cfg.axes else {}
        rollouts = [{**t, "rollout": g, "episode_id": int(t["task_id"]) * 1_000 + g, **axes}
                    for t in tasks for g in range(cfg.group_size)]
        return _Round(self._dispatch(rollouts))

    def _collect(self, rnd: _Round) -> tuple[list[dict], list]:
        """Wait for a round: (summaries, trajectory refs). Records go to the writer by
        reference. A call lost to a dead worker is dispatched again (Ray restarts the
        worker); the writer drops an episode id it already has."""
        import ray
        from ray.exceptions import ObjectLostError, RayActorError, RayTaskError

        summaries, refs = [], []
        pending = list(rnd.calls)
        while pending:
            call = pending.pop(0)
            try:
                got = ray.get(call.summaries)
            except (RayActorError, ObjectLostError, RayTaskError) as exc:
                if call.failures + 1 > MAX_DISPATCH_FAILURES:
                    raise RuntimeError(f"rollouts {[t['episode_id'] for t in call.tasks]} failed "
                                       f"{MAX_DISPATCH_FAILURES} times: {exc}") from exc
                self.retried += len(call.tasks)
                self.log(f"worker {call.worker} lost {len(call.tasks)} rollouts ({type(exc).__name__}); "
                         "dispatching them again")
                pending += self._dispatch(call.tasks, call.failures + 1)
                continue
            summaries += got
            refs.append(call.trajectories)
            self._write_refs.append(self.writer.write.remote(call.records))  # the ref, never the payload
        if len(self._write_refs) > 32:
            _, self._write_refs = ray.wait(self._write_refs, num_returns=len(self._write_refs) - 16)
        return summaries, refs

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict:
        import ray

        from .metrics import get_metrics

        cfg = self.cfg
        t0 = time.perf_counter()
        summaries, refs, rounds = [], [], 0
        if self._ready is not None:  # the overlapped round, collected by the last checkpoint
            (summaries, refs), self._ready, rounds = self._ready, None, 1
        ahead, self._ahead = self._ahead, None
        while rounds == 0 or (informative_groups(summaries) < cfg.min_groups and rounds < cfg.max_sampling_rounds):
            s, r = self._collect(ahead or self._lease_round())
            ahead = None
            summaries += s
            refs += r
            rounds += 1
        rollout_wait_s = time.perf_counter() - t0
        if self.overlap and self.step + 1 < cfg.steps:
            self._ahead = self._lease_round()  # plays on the current weights while the learner updates
        learner_version = self.version
        t1 = time.perf_counter()
        upd = ray.get(self.learner.update_refs.remote(refs))
        update_s = time.perf_counter() - t1
        sync_s = 0.0
        if upd["stepped"]:
            t2 = time.perf_counter()
            push = ray.get(self.learner.push.remote([self.engine], cfg.dtype))
            sync_s = time.perf_counter() - t2
            self.version, self.checksum = int(push["version"]), push["checksum"]
        engine = ray.get(self.engine.info.remote())
        gen_tokens = engine.get("generated_tokens", 0) - self._engine_stats.get("generated_tokens", 0)
        gen_s = engine.get("generate_s", 0.0) - self._engine_stats.get("generate_s", 0.0)
        self._engine_stats = engine
        windows = ray.get(self.scheduler.summary.remote())["levels"]
        self.step += 1
        wall = time.perf_counter() - t0
        m = {"step": self.step, "rounds": rounds, **step_record(summaries, learner_version),
             **{k: v for k, v in upd.items() if not isinstance(v, (list, dict))},
             "step_s": wall, "rollout_wait_s": rollout_wait_s, "update_s": update_s, "sync_s": sync_s,
             "generated_tokens": gen_tokens, "engine_busy_s": gen_s,
             "generation_tokens_per_s": gen_tokens / gen_s if gen_s > 0 else 0.0,
             "update_tokens_per_s": upd.get("tokens_per_s", 0.0), "overlap": self.overlap,
             "engine_version": self.version, "engine_checksum": self.checksum, "retried_rollouts": self.retried,
             "windows": {e: [v["l"], v["h"]] for e, v in windows.items()}}
        self.metrics.append(m)
        warning = no_update_warning(m)
        if warning:
            self.log(warning)
        self.summaries += [{k: s[k] for k in ("episode_id", "env_id", "difficulty", "seed", "r_total", "is_correct",
                                              "turns", "termination_reason")} for s in summaries]
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(m) + "\n")
        metrics = get_metrics()
        metrics.train_step(m)
        metrics.levels({e: (v["l"], v["h"]) for e, v in windows.items()})
        if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
            self.checkpoint()
        return m

    def checkpoint(self) -> Path:
        """``checkpoints/step_NNNNNN/``: model + optimizer + learner version, curriculum,
        train state; then ``checkpoints/latest`` names it. A round in flight (the overlap) is
        collected first, so the curriculum saved has no unplayed lease and its episodes are
        in the parquet; the next step trains on it."""
        import ray

        if self._ahead is not None:
            self._ready, self._ahead = self._collect(self._ahead), None
        d = self.run_dir / "checkpoints" / f"step_{self.step:06d}"
        ray.get(self.learner.save.remote(str(d), self.cfg.chat_settings()))
        ray.get(self.scheduler.checkpoint.remote())
        _write_text(d / "curriculum.json", (self.run_dir / "curriculum.json").read_text())
        _write_json(d / "train_state.json", {"step": self.step, "version": self.version,
                                             "engine_checksum": self.checksum})
        _write_text(self.run_dir / "checkpoints" / "latest", d.name + "\n")
        return d

    def run(self, on_step: Callable[[dict], None] | None = None) -> list[dict]:
        if self.driver is None:
            self.setup()
        try:
            while self.step < self.cfg.steps:
                m = self.train_step()
                if on_step is not None:
                    on_step(m)
                else:
                    self.log(format_step(m, self.cfg.steps))
        finally:
            self.close()
        return self.metrics

    def close(self) -> None:
        import ray

        from . import run_dir as rd

        if self.driver is None:
            return
        try:
            if self.driver.writer is not None:
                ray.get(self._write_refs)
                ray.get(self.driver.writer.close.remote())
                state = ray.get(self.scheduler.state.remote())
                rd.write_summary(self.run_dir, self.summaries, state,
                                 {"policy": f"llm:{self.cfg.model} (DAPO)", "collection": self.cfg.collection,
                                  "episodes": len(self.summaries), "workers": self.cfg.workers,
                                  "shards": self.cfg.shards, "retried_tasks": self.retried})
                rd.write_plots(self.run_dir, self.summaries)
        except Exception as exc:  # noqa: BLE001 - the summary is a convenience; teardown goes on
            self.log(f"summary not written: {exc}")
        finally:
            self.driver.shutdown()
            for a in (self.engine, self.learner):
                try:
                    ray.kill(a, no_restart=True)
                except Exception:  # noqa: BLE001
                    pass
            self.driver = None


def format_step(m: dict, steps: int) -> str:
    return (f"step {m['step']}/{steps}: reward {m['reward_mean']:+.3f} success {m['success_rate']:.0%} "
            f"invalid {m['invalid_rate']:.0%} | groups kept {m.get('groups_kept', 0)} dropped "
            f"{m.get('groups_dropped', 0)} stale {m.get('stale_dropped', 0)} (max staleness {m['staleness_max']}) | "
            f"{m['step_s']:.1f} s (waited {m['rollout_wait_s']:.1f} s on rollouts, update {m['update_s']:.1f} s) | "
            f"gen {m['generation_tokens_per_s']:.0f} tok/s, train {m['update_tokens_per_s']:.0f} tok/s | "
            f"outside the LLM {m['outside_llm_share']:.1%} | v{m['engine_version']}")


def train_ray(cfg: TrainConfig, log: Callable[[str], None] = print,
              on_step: Callable[[dict], None] | None = None) -> list[dict]:
    """Run `cfg.steps` steps on Ray (see the module docstring); returns the per-step metrics."""
    trainer = RayTrainer(cfg, log)
    trainer.setup()
    return trainer.run(on_step)
