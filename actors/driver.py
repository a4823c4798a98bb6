"""The rollout driver behind ``ecomrlve run``: builds the actor system and drives it.

    from ecomrlve.actors.driver import RunConfig, Driver
    result = Driver(RunConfig(collection="C1", episodes=20, policy="oracle")).run()

What it builds (docs/operations.md, "What runs where"):

- the catalog (synthetic, or a built directory) and its global BM25 index, published once
  (object store, or the directory path for memory-mapped loading);
- ``S`` `CatalogShard` actors and a `ShardRouter` handed to every env worker;
- the shopper Serve deployment (template backend), ``max_ongoing_requests`` sized for
  ``W x max_concurrent`` episodes;
- the named `CurriculumScheduler`, checkpointing into the run directory;
- the `TrajectoryWriter` on the driver's node and ``W`` `EnvWorker` actors.

The loop leases tasks from the scheduler in batches, dispatches them to workers
(``run_tasks`` returns two refs: small summaries and the trajectories), waits with
``ray.wait``, and forwards each trajectories ref to the writer without fetching it. Workers
report outcomes to the scheduler themselves (it ignores a task reported twice).

Placement: on a cluster whose nodes carry the custom resource ``RunConfig.env_resource``
(default ``ecomrlve_env``, cluster.yaml's CPU node type), env workers, catalog shards and the
shopper replicas each request 0.001 of it, so they run only on those nodes, and workers and
shards are spread over them (Ray's SPREAD strategy) so one lost node takes only its share;
their CPU requests are planned from those nodes' CPUs. The scheduler and the trajectory
writer are pinned to the driver's node (the run directory is there). Without the resource
(a laptop) or with ``env_resource=""`` everything is placed anywhere. With
``catalog_transport="path"`` every node that may host a worker or a shard must hold the
catalog directory at the same path (cluster.yaml syncs or mounts it): the driver checks each
such node before starting anything and names the path and the node that lacks it.

Fault tolerance: a dead worker's in-flight calls fail with `RayActorError`; their tasks go
back to the front of the queue and run again (Ray restarts the worker, elsewhere if its node
is gone). Shards restart transparently (the router's calls are retried by Ray). A finished
batch whose trajectories were lost with their node before the writer fetched them is run
again too (the driver counts a task as done only once its trajectories are written). The
writer drops an episode id it has already written. So every leased task ends up in the
parquet exactly once.
"""

from __future__ import annotations

import collections
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import ray
from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from ray.exceptions import ObjectLostError, RayActorError, RayTaskError

from ecomrlve.catalog_service.catalog import CatalogDir
from ecomrlve.envs import env_class, resolve_envs

from . import run_dir as rd
from .config import arg
from .metrics import get_metrics

NAMESPACE = "ecomrlve"
ENV_NODE_RESOURCE = "ecomrlve_env"  # custom resource of cluster.yaml's CPU node type
GPU_NODE_RESOURCE = "ecomrlve_gpu"  # custom resource of cluster.yaml's GPU node type
MAX_TASK_FAILURES = 5  # a task whose dispatch failed this often stops the run

__all__ = ["RunConfig", "RunResult", "Driver", "run", "plan_cpus", "NAMESPACE"]


class RunConfig(BaseModel):
    """What ``ecomrlve run`` rolls out and on which actors; every value is checked on construction
    (pydantic), so a bad one fails before Ray starts. Fields marked ``cli=False`` are reachable
    from Python only."""

    model_config = ConfigDict(extra="forbid")

    collection: str = arg("C8", "collection (C1, C2, C4, C8), env id, or comma-separated mix", short="-c")
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

    @field_validator("collection")
    @classmethod
    def _known_collection(cls, v: str) -> str:
        resolve_envs(v)
        return v

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


def plan_cpus(total_cpus: float, workers: int, shards: int) -> tuple[float, float]:
    """CPU requests (worker, shard) so that W workers, S shards and the shopper fit."""
    budget = max(float(total_cpus) - 0.2, 0.2)
    worker = min(1.0, round(budget * 0.7 / workers, 3))
    shard = min(1.0, round(budget * 0.3 / shards, 3))
    return max(worker, 0.01), max(shard, 0.01)


class Driver:
    def __init__(self, config: RunConfig):
        self.config = config
        self.env_ids = resolve_envs(config.collection)
        for env_id in self.env_ids:  # fail fast, in the driver, on an environment that cannot load
            try:
                env_class(env_id)
            except ImportError as exc:
                raise ValueError(f"environment {env_id} is not available: {exc}") from None
        self.started = False
        self.workers: list = []
        self.router = None
        self.scheduler = None
        self.writer = None
        self.shopper_client = None
        self.source = None
        self.run_dir: Path | None = None
        self.output: rd.RunOutput | None = None
        self.retried = 0

    # ------------------------------------------------------------------ build
    def _catalog_source(self, log: Callable[[str], None]):
        from ecomrlve.catalog_service import Catalog
        from ecomrlve.catalog_service.search import read_meta
        from ecomrlve.catalog_service.shards import CatalogSource

        cfg = self.config
        if cfg.catalog_dir:
            has_index = read_meta(cfg.catalog_dir) is not None
            if has_index and cfg.catalog_transport in ("auto", "path"):
                log(f"catalog: {cfg.catalog_dir} (memory-mapped by every actor)")
                return CatalogSource.from_dir(cfg.catalog_dir)
            if cfg.catalog_transport == "path":
                raise ValueError(f"catalog directory {cfg.catalog_dir} has no search index; "
                                 "build it with `ecomrlve catalog build` or use --catalog-transport object-store")
            t0 = time.perf_counter()
            catalog = Catalog.load(cfg.catalog_dir)
            log(f"catalog: loaded {len(catalog):,} products from {cfg.catalog_dir} in {time.perf_counter() - t0:.1f} s")
        else:
            t0 = time.perf_counter()
            catalog = Catalog.synthetic(n_products=cfg.catalog_size, seed=cfg.catalog_seed)
            log(f"catalog: generated {len(catalog):,} synthetic products in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        source = CatalogSource.from_catalog(catalog)
        log(f"catalog: indexed and published to the object store in {time.perf_counter() - t0:.1f} s")
        return source

    def _node_resources(self) -> dict:
        """What workers, shards and the shopper request: a sliver of `env_resource` when the
        cluster has it, else nothing."""
        r = self.config.env_resource
        return {r: 0.001} if r and ray.cluster_resources().get(r) else {}

    def _placement_nodes(self, labels: dict) -> list[dict]:
        """The alive nodes that may host workers and shards."""
        return [n for n in ray.nodes() if n.get("Alive") and all(n["Resources"].get(r, 0) > 0 for r in labels)]

    def _check_catalog_on_nodes(self, nodes: list[dict]) -> None:
        """With a catalog passed by path, every node in `nodes` must hold the same directory."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        path = self.source.directory
        want = _manifest_digest(path)
        probes = [_catalog_digest_on_node.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(path)
            for n in nodes]
        for node, got in zip(nodes, ray.get(probes)):
            where = f"node {node.get('NodeManagerAddress', '?')} ({node['NodeID'][:8]})"
            if got is None:
                raise ValueError(f"catalog directory {path} is missing on {where}: with catalog transport 'path' "
                                 "every node needs it (sync or mount it there) or use --catalog-transport object-store")
            if got != want:
                raise ValueError(f"catalog directory {path} on {where} holds another catalog "
                                 "(its manifest differs from the driver's)")

    def start(self, log: Callable[[str], None] = lambda s: None, policy: Any = None, run_dir: Path | None = None,
              append: bool = False, reserved_cpus: float = 0.0) -> "Driver":
        """Build the actor system. `policy`: the workers' `PolicyClient` (default: the
        config's local policy). `run_dir`: an existing run directory owned by the caller
        (its config.json is left alone; `append` keeps the trajectories already there).
        `reserved_cpus`: logical CPUs the caller's own actors take (engine, learner)."""
        from ecomrlve.catalog_service.shards import start_shards
        from ecomrlve.scheduler.actor import SCHEDULER_NAME, create_scheduler

        from .env_worker import EnvWorker, LocalPolicyClient
        from .run_dir import _writer_actor

        cfg = self.config
        if not ray.is_initialized():
            raise RuntimeError("call ray.init() (or ecomrlve.actors.cli.init_ray()) before starting the driver")
        if run_dir is None:
            self.output = rd.RunOutput(cfg.out)
            self.run_dir = self.output.local
            rd.write_config(self.run_dir, cfg.model_dump())
            log(f"run directory: {self.run_dir}" + (f" (copied to {self.output.uri} when the run ends)"
                                                   if self.output.uri else ""))
        else:
            self.run_dir = Path(run_dir)
        labels = self._node_resources()
        if labels:  # workers and shards fit on the labelled nodes only
            nodes = self._placement_nodes(labels)
            total = max(sum(n["Resources"].get("CPU", 0.0) for n in nodes) - reserved_cpus, 0.2)
            log(f"placement: workers, shards and shopper on the {len(nodes)} node(s) with resource "
                f"{', '.join(labels)}")
        else:
            total = max(ray.cluster_resources().get("CPU", 2.0) - reserved_cpus, 0.2)
        w_cpu, s_cpu = plan_cpus(total, cfg.workers, cfg.shards)
        w_cpu = cfg.worker_cpus if cfg.worker_cpus is not None else w_cpu
        s_cpu = cfg.shard_cpus if cfg.shard_cpus is not None else s_cpu
        spread = "SPREAD" if labels else None

        self.source = self._catalog_source(log)
        if self.source.directory:
            self._check_catalog_on_nodes(self._placement_nodes(labels))
        t0 = time.perf_counter()
        self.router = start_shards(self.source, cfg.shards, num_cpus=s_cpu, resources=labels,
                                   scheduling_strategy=spread)
        log(f"shards: {cfg.shards} up in {time.perf_counter() - t0:.1f} s")

        if cfg.shopper == "serve":
            from .shopper_service import ShopperClient, deploy_shopper

            t0 = time.perf_counter()
            handle = deploy_shopper(cfg.shopper_backend, max_ongoing_requests=cfg.workers * cfg.max_concurrent * 2,
                                    num_replicas=cfg.shopper_replicas, resources=labels or None)
            self.shopper_client = ShopperClient(handle, cfg.shopper_backend)
            log(f"shopper: Serve deployment ({cfg.shopper_backend}) up in {time.perf_counter() - t0:.1f} s")
        elif cfg.shopper == "local":
            from .shopper_service import LocalShopperClient

            self.shopper_client = LocalShopperClient(cfg.shopper_backend)

        ckpt = self.run_dir / rd.CURRICULUM_FILE
        if cfg.resume:
            if Path(cfg.resume).resolve() != ckpt.resolve():
                ckpt.write_text(Path(cfg.resume).read_text())
        curriculum_cfg = {"first_seed": cfg.seed * 1_000_000, **cfg.curriculum}
        self.scheduler_name = f"{SCHEDULER_NAME}-{self.run_dir.name}"
        here = ray.get_runtime_context().get_node_id()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # the scheduler checkpoints into the run directory: it lives (and restarts) where that is
        self.scheduler = create_scheduler(self.env_ids, curriculum_cfg, seed=cfg.seed, checkpoint_path=str(ckpt),
                                          checkpoint_every=cfg.checkpoint_every, name=self.scheduler_name,
                                          namespace=NAMESPACE,
                                          scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False))
        self.writer = _writer_actor().options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)
        ).remote(str(self.run_dir), append=append)
        opts: dict = {"num_cpus": w_cpu, "max_concurrency": max(1000, cfg.max_concurrent * 4)}
        if labels:
            opts.update(resources=labels, scheduling_strategy=spread)
        t0 = time.perf_counter()
        # the constructor arguments live in the object store, referenced by the driver for the
        # whole run: a worker restarted after its node died is rebuilt from them (Ray deletes
        # an actor's stored arguments once nothing references them: ray-project/ray#53727)
        self._worker_args = [ray.put(a) for a in (self.source, self.router, policy or LocalPolicyClient(cfg.policy),
                                                  self.shopper_client, self.scheduler)]
        self.workers = [
            EnvWorker.options(**opts).remote(i, *self._worker_args, cfg.max_concurrent, cfg.threads)
            for i in range(cfg.workers)
        ]
        ray.get([w.ping.remote() for w in self.workers] + [self.scheduler.summary.remote()])
        log(f"workers: {cfg.workers} up in {time.perf_counter() - t0:.1f} s "
            f"(cpus: worker {w_cpu}, shard {s_cpu}); run dir {self.run_dir}")
        self.started = True
        return self

    # ------------------------------------------------------------------ run
    def run(self, progress: Callable[[dict], None] | None = None, log: Callable[[str], None] = lambda s: None,
            on_result: Callable[["Driver", dict], None] | None = None) -> RunResult:
        """Run `config.episodes` episodes; `progress(stats)` is called about twice a second,
        `on_result(driver, stats)` after every finished dispatch (tests inject faults there)."""
        if not self.started:
            self.start(log)
        cfg = self.config
        metrics = get_metrics()
        n_total = cfg.episodes
        queue: collections.deque = collections.deque()
        self.inflight = inflight = {}  # summaries ref -> (worker index, tasks, trajectories ref)
        self.load = load = [0] * len(self.workers)  # episodes in flight per worker
        leased_ids: set[int] = set()
        done: dict[int, dict] = {}
        writes: dict = {}  # writer call ref -> the batch whose trajectories it writes
        down: dict[int, tuple] = {}  # worker whose call failed -> (ping ref or None, when sent)
        failures: collections.Counter = collections.Counter()
        cap = cfg.max_concurrent + cfg.batch_size  # keep one batch queued behind the running ones
        lease_chunk = max(cfg.batch_size * len(self.workers), cfg.batch_size)
        if cfg.resume:  # tasks leased before the checkpoint but never reported run first
            for t in ray.get(self.scheduler.pending.remote())[:n_total]:
                queue.append(t)
                leased_ids.add(int(t["task_id"]))
        t_start = time.perf_counter()
        last_progress = 0.0
        windows: dict = {}
        next_worker = 0

        def stats() -> dict:
            elapsed = max(time.perf_counter() - t_start, 1e-9)
            return {"done": len(done), "total": n_total, "elapsed_s": elapsed, "eps": len(done) / elapsed,
                    "inflight": sum(load), "queued": len(queue), "retried": self.retried,
                    "summaries": done, "windows": windows}

        def requeue(batch: list, exc: Exception, what: str) -> None:
            """Run `batch` again (a lost worker or lost trajectories); give up on a task
            that keeps failing."""
            for t in batch:
                failures[t["task_id"]] += 1
                if failures[t["task_id"]] > MAX_TASK_FAILURES:
                    raise RuntimeError(f"task {t['task_id']} failed {MAX_TASK_FAILURES} times: {exc}") from exc
                done.pop(_episode_id(t), None)
            self.retried += len(batch)
            log(f"{what} lost {len(batch)} tasks ({type(exc).__name__}); re-dispatching them")
            queue.extendleft(reversed(batch))

        def check_down() -> None:
            """A worker whose call failed gets no tasks until it answers a ping (Ray is
            restarting it, on another node if its node is gone); a failed ping is retried."""
            now = time.perf_counter()
            for w, (ping, sent) in list(down.items()):
                if ping is None:
                    if now - sent > 0.5:
                        down[w] = (self.workers[w].ping.remote(), now)
                    continue
                if not ray.wait([ping], timeout=0)[0]:
                    continue
                try:
                    ray.get(ping)
                except (RayActorError, RayTaskError):
                    down[w] = (None, now)
                    continue
                del down[w]
                log(f"worker {w} is back")

        def settle_writes(keep: int | None = None) -> None:
            """Collect finished writer calls (waiting until at most `keep` are open); a batch
            whose trajectories were lost (their node died before the writer fetched them)
            runs again."""
            if not writes:
                return
            n = len(writes) if keep is None else max(len(writes) - keep, 0)
            ready, _ = ray.wait(list(writes), num_returns=max(n, 1), timeout=0 if keep is None else None)
            for ref in ready:
                batch = writes.pop(ref)
                try:
                    ray.get(ref)
                except (ObjectLostError, RayTaskError) as exc:
                    if isinstance(exc, RayTaskError) and not isinstance(getattr(exc, "cause", None), ObjectLostError):
                        raise
                    requeue(batch, exc, "the writer")

        while len(done) < n_total or writes:
            # ---- dispatch
            progressed = True
            while progressed:
                progressed = False
                for k in range(len(self.workers)):
                    w = (next_worker + k) % len(self.workers)
                    if w in down or load[w] + cfg.batch_size > cap:
                        continue
                    if not queue and len(leased_ids) < n_total:
                        want = min(lease_chunk, n_total - len(leased_ids))
                        for t in ray.get(self.scheduler.lease.remote(want)):
                            queue.append(t)
                            leased_ids.add(int(t["task_id"]))
                    if not queue:
                        break
                    batch = [queue.popleft() for _ in range(min(cfg.batch_size, len(queue)))]
                    s_ref, t_ref = self.workers[w].run_tasks.remote(batch)
                    inflight[s_ref] = (w, batch, t_ref)
                    load[w] += len(batch)
                    progressed = True
                next_worker = (next_worker + 1) % len(self.workers)
            metrics.queue_depth("driver_queued", len(queue))
            metrics.queue_depth("driver_inflight", sum(load))
            if not inflight and not writes and not down:
                raise RuntimeError("nothing in flight and episodes missing: the scheduler leased no tasks")

            # ---- collect
            if not inflight:  # only trajectories left to write, or every worker is restarting
                pending = list(writes) + [p for p, _ in down.values() if p is not None]
                if pending:
                    ray.wait(pending, num_returns=1, timeout=0.5)
                else:
                    time.sleep(0.1)
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5) if inflight else ([], [])
            for ref in ready:
                w, batch, t_ref = inflight.pop(ref)
                load[w] -= len(batch)
                try:
                    summaries = ray.get(ref)
                except (RayActorError, ObjectLostError, RayTaskError) as exc:
                    # the worker died (or the call failed): run these tasks again, elsewhere or
                    # on the restarted worker
                    requeue(batch, exc, f"worker {w}")
                    if isinstance(exc, RayActorError):
                        down.setdefault(w, (None, 0.0))
                    continue
                for s in summaries:
                    done.setdefault(int(s["episode_id"]), s)
                writes[self.writer.write.remote(t_ref)] = batch  # the ref, never the payload
                if on_result is not None:
                    on_result(self, stats())
            settle_writes(keep=16 if len(writes) > 32 else None)  # backpressure on the writer
            check_down()
            now = time.perf_counter()
            if now - last_progress > 0.5:
                last_progress = now
                try:
                    windows = ray.get(self.scheduler.summary.remote(), timeout=5)["levels"]
                except Exception:  # noqa: BLE001 - display only
                    pass
                metrics.levels({e: (v["l"], v["h"]) for e, v in windows.items()})
                st = stats()
                metrics.episodes_per_second(st["eps"])
                if progress is not None:
                    progress(st)

        wall = time.perf_counter() - t_start
        written = ray.get(self.writer.close.remote())
        ray.get(self.scheduler.shutdown.remote())
        curriculum = ray.get(self.scheduler.state.remote())
        summaries = [done[k] for k in sorted(done)]
        errors = sum(1 for s in summaries if s["termination_reason"].startswith("error"))
        meta = {
            "policy": cfg.policy, "collection": f"{cfg.collection} ({', '.join(self.env_ids)})",
            "episodes": len(summaries), "workers": cfg.workers, "shards": cfg.shards,
            "catalog": cfg.catalog_dir or f"synthetic n={cfg.catalog_size} seed={cfg.catalog_seed}",
            "wall_s": f"{wall:.1f}", "episodes_per_s": f"{len(summaries) / wall:.2f}",
            "retried_tasks": self.retried, "errors": errors,
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
                         written["episodes"], written["duplicates_dropped"], self.retried, errors, curriculum,
                         summaries, location)

    # ------------------------------------------------------------------ teardown
    def shutdown(self) -> None:
        for a in self.workers + ([self.writer] if self.writer else []):
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001
                pass
        if self.router is not None:
            for s in self.router.shards:
                try:
                    ray.kill(s, no_restart=True)
                except Exception:  # noqa: BLE001
                    pass
        if self.scheduler is not None:
            try:
                ray.get(self.scheduler.shutdown.remote(), timeout=10)
            except Exception:  # noqa: BLE001
                pass
            try:
                ray.kill(self.scheduler, no_restart=True)
            except Exception:  # noqa: BLE001
                pass
            _wait_name_released(self.scheduler_name)  # a resumed run in this session reuses the name
        if self.config.shopper == "serve" and self.shopper_client is not None:
            from .shopper_service import shutdown_shopper

            shutdown_shopper()
        self.workers, self.router, self.scheduler, self.writer = [], None, None, None
        self._worker_args = []
        self.started = False
        if self.output is not None and self.output.uri is not None:  # a failed run's files still reach --out
            try:
                if not self.output.uploaded:
                    self.output.upload()
            except Exception:  # noqa: BLE001 - the run's own error is the one to report
                pass
            self.output.cleanup()
            self.output = None


def _episode_id(task: dict) -> int:
    return int(task.get("episode_id", task["task_id"]))


def _manifest_digest(directory: str) -> str | None:
    """blake2b of a catalog directory's manifest (which names its rows and files), or None
    when the directory has none."""
    from ecomrlve.catalog_service.catalog import MANIFEST_FILE

    try:
        return hashlib.blake2b((Path(directory) / MANIFEST_FILE).read_bytes(), digest_size=16).hexdigest()
    except OSError:
        return None


@ray.remote(num_cpus=0)
def _catalog_digest_on_node(directory: str) -> str | None:
    return _manifest_digest(directory)


def _wait_name_released(name: str, timeout_s: float = 10.0) -> None:
    """Wait until no live actor holds `name` in our namespace (ray.kill is asynchronous)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return
        time.sleep(0.05)


def run(config: RunConfig, **kwargs: Any) -> RunResult:
    driver = Driver(config)
    try:
        return driver.run(**kwargs)
    finally:
        driver.shutdown()
