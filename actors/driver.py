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

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import ray
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ecomrlve.catalog_service.catalog import CatalogDir
from ecomrlve.envs import env_class, resolve_envs

from . import run_dir as rd
from .config import Collection, arg
from .dispatch import Dispatcher
from .metrics import get_metrics
from .system import ENV_NODE_RESOURCE, ActorSystem, SystemSpec

__all__ = ["RunConfig", "RunResult", "Driver", "run"]


class RunConfig(BaseModel):
    """What ``ecomrlve run`` rolls out and on which actors; every value is checked on construction
    (pydantic), so a bad one fails before Ray starts. Fields marked ``cli=False`` are reachable
    from Python only."""

    model_config = ConfigDict(extra="forbid")

    collection: Collection = arg("C8", "collection (C1, C2, C4, C8), env id, or comma-separated mix", short="-c")
    policy: Literal["heuristic", "oracle"] = arg("heuristic", "agent")
    episodes: int = arg(1000, "episodes", short="-n", ge=1)
    workers: int = arg(2, "env worker actors W", short="-w", ge=1)
    shards: int = arg(2, "catalog shard actors S", short="-s", ge=1)
    catalog_size: int = arg(20_000, "products of the synthetic catalog (2000000 works)", ge=1)
    catalog_dir: CatalogDir = arg(None, "a catalog directory from `ecomrlve catalog build` (instead of generating one)",
                                  flag="--catalog")
    catalog_transport: Literal["auto", "path", "object-store"] = arg(
        "auto", "how actors get a --catalog: memory-map the path (needs it on every node) or the object store "
                "(auto: the path when it holds a search index)")
    catalog_seed: int = arg(0, "synthetic catalog seed")
    seed: int = arg(0, "curriculum seed; task seeds start at seed x 1000000", ge=0)
    out: str | None = arg(None, "run directory: a local path or a filesystem URI (s3://, gs://, file:// on a shared "
                                "mount); default runs/<timestamp>, or ~/ecomrlve_runs/<timestamp> under `ray job submit`")
    batch_size: int = arg(4, "tasks per dispatch", ge=1)
    max_concurrent: int = arg(32, "episodes at once per worker", ge=1)
    threads: int = arg(8, "step threads per worker", ge=1)
    shopper: Literal["serve", "local", "none"] = arg("serve", "shopper phrasing: Ray Serve deployment, in-process, or none")
    shopper_backend: str = arg("template", "shopper backend")
    shopper_replicas: int = arg(1, "replicas of the shopper deployment", ge=1, cli=False)
    worker_cpus: float | None = arg(None, "CPUs per env worker (None: planned from the cluster's CPUs)", cli=False)
    shard_cpus: float | None = arg(None, "CPUs per catalog shard (None: planned)", cli=False)
    env_resource: str = arg(ENV_NODE_RESOURCE, "custom resource of the nodes that host env workers, catalog shards and "
                                               "the shopper, used when the cluster has it ('' places them anywhere)")
    checkpoint_every: int = arg(10, "curriculum checkpoint period", cli=False)
    curriculum: dict = arg(description="CurriculumConfig overrides (tau_num, ...)", default_factory=dict, cli=False)
    resume: str | None = arg(None, "continue the curriculum from a curriculum.json")

    @field_validator("env_resource")
    @classmethod
    def _resource_name(cls, v: str) -> str:
        if v.strip() != v:
            raise ValueError(f"must be a resource name or '', got {v!r}")
        return v

    @field_validator("out")
    @classmethod
    def _usable_out(cls, v: str | None) -> str | None:
        rd.check_out(v)
        return v

    @model_validator(mode="after")
    def _catalog_fits_shards(self) -> "RunConfig":
        if self.catalog_dir is None and self.catalog_size < self.shards:
            raise ValueError(f"catalog_size must be >= shards ({self.shards}), got {self.catalog_size}")
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
        self.config = config
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
        rd.write_config(self.run_dir, cfg.model_dump())
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
