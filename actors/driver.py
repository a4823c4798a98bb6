"""``ecomrlve run``: build the actor system, then stream tasks from the curriculum through
the dispatcher until ``episodes`` are written.

    from ecomrlve.actors.driver import RunConfig, Driver
    result = Driver(RunConfig(collection="C1", episodes=20, policy="oracle")).run()

`ecomrlve.actors.system.ActorSystem` builds the actors (catalog shards, shopper, curriculum
scheduler, trajectory writer, env workers; placement by resource, catalog by path or object
store). `ecomrlve.actors.dispatch.Dispatcher` leases tasks from the scheduler in batches,
dispatches them to the workers, re-runs the tasks of a dead worker and sends the records to
the writer by reference, so every leased task ends up in the parquet exactly once. The
trainer's Ray backend and ``ecomrlve eval --address`` use the same two pieces.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import ray

from ecomrlve.envs import env_class, resolve_envs

from . import run_dir as rd
from .dispatch import Dispatcher
from .metrics import get_metrics
from .system import ENV_NODE_RESOURCE, ActorSystem, SystemSpec

__all__ = ["RunConfig", "RunResult", "Driver", "run"]


@dataclass
class RunConfig:
    collection: str = "C8"  # collection name, env id, or comma-separated mix
    episodes: int = 200
    workers: int = 2
    shards: int = 2
    policy: str = "heuristic"  # heuristic | oracle
    catalog_size: int = 20_000
    catalog_dir: str | None = None  # a built catalog directory (ecomrlve catalog build)
    catalog_transport: str = "auto"  # auto | path | object-store
    catalog_seed: int = 0
    seed: int = 0  # curriculum sampling seed; task seeds start at seed * 1_000_000
    out: str | None = None  # run directory or filesystem URI (default: run_dir.default_runs_root()/<timestamp>)
    batch_size: int = 4  # tasks per dispatch call
    max_concurrent: int = 32  # episodes at once per worker
    threads: int = 8  # step threads per worker
    shopper: str = "serve"  # serve | local | none
    shopper_backend: str = "template"
    shopper_replicas: int = 1
    worker_cpus: float | None = None  # None: planned from the cluster's CPUs
    shard_cpus: float | None = None
    env_resource: str = ENV_NODE_RESOURCE  # custom resource of the nodes for workers/shards/shopper ("" = anywhere)
    checkpoint_every: int = 10
    curriculum: dict = field(default_factory=dict)  # CurriculumConfig overrides (tau_num, ...)
    resume: str | None = None  # a curriculum.json to continue from

    def validate(self) -> "RunConfig":
        resolve_envs(self.collection)
        for name in ("episodes", "workers", "shards", "batch_size", "max_concurrent", "threads", "shopper_replicas"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.policy not in ("heuristic", "oracle"):
            raise ValueError(f"policy must be 'heuristic' or 'oracle', got {self.policy!r}")
        if self.shopper not in ("serve", "local", "none"):
            raise ValueError(f"shopper must be 'serve', 'local' or 'none', got {self.shopper!r}")
        if self.catalog_transport not in ("auto", "path", "object-store"):
            raise ValueError(f"catalog_transport must be auto, path or object-store, got {self.catalog_transport!r}")
        if self.catalog_dir is None and (not isinstance(self.catalog_size, int) or self.catalog_size < self.shards):
            raise ValueError(f"catalog_size must be an integer >= shards ({self.shards}), got {self.catalog_size!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not isinstance(self.env_resource, str) or self.env_resource.strip() != self.env_resource:
            raise ValueError(f"env_resource must be a resource name or '', got {self.env_resource!r}")
        if self.catalog_dir is not None and not Path(self.catalog_dir).expanduser().is_dir():
            raise ValueError(f"catalog_dir: no catalog directory at {self.catalog_dir} (build one with "
                             "`ecomrlve catalog build --out DIR`)")
        rd.check_out(self.out)
        return self

    def system_spec(self) -> SystemSpec:
        return SystemSpec(env_ids=resolve_envs(self.collection), workers=self.workers, shards=self.shards,
                          catalog_size=self.catalog_size, catalog_dir=self.catalog_dir,
                          catalog_transport=self.catalog_transport, catalog_seed=self.catalog_seed, seed=self.seed,
                          max_concurrent=self.max_concurrent, threads=self.threads, shopper=self.shopper,
                          shopper_backend=self.shopper_backend, shopper_replicas=self.shopper_replicas,
                          worker_cpus=self.worker_cpus, shard_cpus=self.shard_cpus, env_resource=self.env_resource,
                          checkpoint_every=self.checkpoint_every, curriculum=dict(self.curriculum),
                          resume=self.resume)


@dataclass
class RunResult:
    run_dir: Path
    episodes: int
    wall_s: float
    episodes_per_s: float
    leased: int
    written: int
    duplicates_dropped: int
    retried_tasks: int
    errors: int
    curriculum: dict
    summaries: list = field(repr=False, default_factory=list)
    location: str = ""  # where the run directory ended up: run_dir, or the --out URI it was copied to


class Driver:
    """`start()` builds the actor system (`self.system`), `run()` plays `config.episodes`
    episodes through a `Dispatcher` (`self.dispatcher`), `shutdown()` tears it down."""

    def __init__(self, config: RunConfig):
        self.config = config.validate()
        self.env_ids = resolve_envs(config.collection)
        for env_id in self.env_ids:  # fail fast, in the driver, on an environment that cannot load
            try:
                env_class(env_id)
            except ImportError as exc:
                raise ValueError(f"environment {env_id} is not available: {exc}") from None
        self.system = ActorSystem(config.system_spec())
        self.dispatcher: Dispatcher | None = None
        self.run_dir: Path | None = None
        self.output: rd.RunOutput | None = None

    @property
    def started(self) -> bool:
        return self.system.started

    def start(self, log: Callable[[str], None] = lambda s: None) -> "Driver":
        """Create the run directory (config.json) and build the actor system with the
        config's local policy."""
        from .env_worker import LocalPolicyClient

        cfg = self.config
        self.output = rd.RunOutput(cfg.out)
        self.run_dir = self.output.local
        rd.write_config(self.run_dir, dataclasses.asdict(cfg))
        log(f"run directory: {self.run_dir}" + (f" (copied to {self.output.uri} when the run ends)"
                                               if self.output.uri else ""))
        self.system.start(self.run_dir, LocalPolicyClient(cfg.policy), log)
        return self

    # ------------------------------------------------------------------ run
    def run(self, progress: Callable[[dict], None] | None = None, log: Callable[[str], None] = lambda s: None,
            on_result: Callable[["Driver", dict], None] | None = None) -> RunResult:
        """Run `config.episodes` episodes; `progress(stats)` is called about twice a second,
        `on_result(driver, stats)` after every finished dispatch (tests inject faults there)."""
        if not self.started:
            self.start(log)
        cfg = self.config
        scheduler = self.system.scheduler
        metrics = get_metrics()
        n_total = cfg.episodes
        leased_ids: set[int] = set()

        def lease(want: int) -> list:
            want = min(want, n_total - len(leased_ids))
            if want <= 0:
                return []
            tasks = ray.get(scheduler.lease.remote(want))
            leased_ids.update(int(t["task_id"]) for t in tasks)
            return tasks

        t_start = time.perf_counter()
        windows: dict = {}

        def stats() -> dict:
            d = self.dispatcher
            elapsed = max(time.perf_counter() - t_start, 1e-9)
            return {"done": len(d.done), "total": n_total, "elapsed_s": elapsed, "eps": len(d.done) / elapsed,
                    "inflight": sum(d.load), "queued": len(d.queue), "retried": d.retried,
                    "summaries": d.done, "windows": windows}

        on_call = None if on_result is None else (lambda call: on_result(self, stats()))
        self.dispatcher = disp = Dispatcher(self.system, cfg.batch_size, cfg.max_concurrent, "run_tasks", lease=lease,
                                            log=log, on_call=on_call)
        if cfg.resume:  # tasks leased before the checkpoint but never reported run first
            pending = ray.get(scheduler.pending.remote())[:n_total]
            leased_ids.update(int(t["task_id"]) for t in pending)
            disp.submit(pending)
        last_progress = 0.0
        while len(disp.done) < n_total or disp.writes:
            disp.dispatch()
            if not disp.busy:
                raise RuntimeError("nothing in flight and episodes missing: the scheduler leased no tasks")
            disp.poll()
            now = time.perf_counter()
            if now - last_progress > 0.5:
                last_progress = now
                try:
                    windows = ray.get(scheduler.summary.remote(), timeout=5)["levels"]
                except Exception:  # noqa: BLE001 - display only
                    pass
                metrics.levels({e: (v["l"], v["h"]) for e, v in windows.items()})
                st = stats()
                metrics.episodes_per_second(st["eps"])
                if progress is not None:
                    progress(st)

        wall = time.perf_counter() - t_start
        written = ray.get(self.system.writer.close.remote())
        ray.get(scheduler.shutdown.remote())
        curriculum = ray.get(scheduler.state.remote())
        summaries = [disp.done[k] for k in sorted(disp.done)]
        errors = sum(1 for s in summaries if s["termination_reason"].startswith("error"))
        meta = {
            "policy": cfg.policy, "collection": f"{cfg.collection} ({', '.join(self.env_ids)})",
            "episodes": len(summaries), "workers": cfg.workers, "shards": cfg.shards,
            "catalog": cfg.catalog_dir or f"synthetic n={cfg.catalog_size} seed={cfg.catalog_seed}",
            "wall_s": f"{wall:.1f}", "episodes_per_s": f"{len(summaries) / wall:.2f}",
            "retried_tasks": disp.retried, "errors": errors,
        }
        rd.write_summary(self.run_dir, summaries, curriculum, meta)
        rd.write_plots(self.run_dir, summaries)
        (self.run_dir / "run.json").write_text(json.dumps(
            {**meta, "leased": len(leased_ids), "written": written["episodes"],
             "duplicates_dropped": written["duplicates_dropped"]}, indent=2) + "\n")
        if progress is not None:
            progress({**stats(), "windows": curriculum["levels"]})
        location = str(self.run_dir)
        if self.output is not None and self.output.uri is not None:
            location = self.output.upload()
            log(f"run directory copied to {location}")
        return RunResult(self.run_dir, len(summaries), wall, len(summaries) / wall, len(leased_ids),
                         written["episodes"], written["duplicates_dropped"], disp.retried, errors, curriculum,
                         summaries, location)

    # ------------------------------------------------------------------ teardown
    def shutdown(self) -> None:
        self.system.shutdown()
        if self.output is not None and self.output.uri is not None:  # a failed run's files still reach --out
            try:
                if not self.output.uploaded:
                    self.output.upload()
            except Exception:  # noqa: BLE001 - the run's own error is the one to report
                pass
            self.output.cleanup()
            self.output = None

def run(config: RunConfig, **kwargs: Any) -> RunResult:
    driver = Driver(config)
    try:
        return driver.run(**kwargs)
    finally:
        driver.shutdown()
