"""`ActorSystem`: builds (and tears down) the rollout actors that ``ecomrlve run``,
``ecomrlve train`` (Ray backend) and ``ecomrlve eval --address`` share.

    system = ActorSystem(SystemSpec(env_ids=["E_CART"], workers=2, shards=2)).start(
        run_dir, policy=LocalPolicyClient("heuristic"))
    ...  # ecomrlve.actors.dispatch.Dispatcher(system, ...) plays tasks on it
    system.shutdown()

What it builds (docs/operations.md, "What runs where"):

- the catalog (synthetic, or a built directory) and its global BM25 index, published once
  (object store, or the directory path for memory-mapped loading);
- ``S`` `CatalogShard` actors and a `ShardRouter` handed to every env worker;
- the shopper Serve deployment (template backend), ``max_ongoing_requests`` sized for
  ``W x max_concurrent`` episodes (or an in-process shopper, or none);
- the named `CurriculumScheduler`, checkpointing into the run directory: adaptive, or
  serving a fixed task list (`SystemSpec.tasks`, evaluation);
- the `TrajectoryWriter` on the caller's node and ``W`` `EnvWorker` actors whose policy is
  the caller's `PolicyClient` (a local policy, or an `EngineClient` of a `PolicyEngine`).

Placement: on a cluster whose nodes carry the custom resource ``SystemSpec.env_resource``
(default ``ecomrlve_env``, cluster.yaml's CPU node type), env workers, catalog shards and the
template shopper's replicas each request 0.001 of it, so they run only on those nodes (an LLM
shopper goes to the GPU node type instead when one is up: `shopper_placement`), and workers and
shards are spread over them (Ray's SPREAD strategy) so one lost node takes only its share;
their CPU requests are planned from those nodes' CPUs. The scheduler and the trajectory
writer are pinned to the caller's node (the run directory is there). Without the resource
(a laptop) or with ``env_resource=""`` everything is placed anywhere. With
``catalog_transport="path"`` every node that may host a worker or a shard must hold the
catalog directory at the same path (cluster.yaml syncs or mounts it): `start` checks each
such node before starting anything and names the path and the node that lacks it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import ray

from . import run_dir as rd

NAMESPACE = "ecomrlve"
ENV_NODE_RESOURCE = "ecomrlve_env"  # custom resource of cluster.yaml's CPU node type
GPU_NODE_RESOURCE = "ecomrlve_gpu"  # custom resource of cluster.yaml's GPU node type

SHOPPER_GPUS = 0.25  # the GPU share of an LLM shopper replica on a GPU node

__all__ = ["SystemSpec", "ActorSystem", "plan_cpus", "shopper_placement", "NAMESPACE", "ENV_NODE_RESOURCE",
           "GPU_NODE_RESOURCE", "SHOPPER_GPUS"]


@dataclass
class SystemSpec:
    """What to build; the commands' configs (RunConfig, TrainConfig, EvalConfig) validate
    their fields and produce one of these."""

    env_ids: list
    workers: int = 2
    shards: int = 2
    catalog_size: int = 20_000
    catalog_dir: str | None = None
    catalog_transport: str = "auto"  # auto | path | object-store
    catalog_seed: int = 0
    seed: int = 0  # curriculum sampling seed; task seeds start at seed * 1_000_000
    max_concurrent: int = 32  # episodes at once per worker
    threads: int = 8  # step threads per worker
    shopper: str = "serve"  # serve | local | none
    shopper_backend: str = "template"
    shopper_replicas: int = 1
    shopper_gpus: float = SHOPPER_GPUS  # per replica of a GPU-wanting backend on a GPU node
    worker_cpus: float | None = None  # None: planned from the cluster's CPUs
    shard_cpus: float | None = None
    env_resource: str = ENV_NODE_RESOURCE
    checkpoint_every: int = 10
    curriculum: dict = field(default_factory=dict)  # CurriculumConfig overrides (tau_num, ...)
    resume: str | None = None  # a curriculum.json to continue from
    tasks: list | None = None  # a fixed task list: the scheduler serves exactly these (evaluation)


def plan_cpus(total_cpus: float, workers: int, shards: int) -> tuple[float, float]:
    """CPU requests (worker, shard) so that W workers, S shards and the shopper fit."""
    budget = max(float(total_cpus) - 0.2, 0.2)
    worker = min(1.0, round(budget * 0.7 / workers, 3))
    shard = min(1.0, round(budget * 0.3 / shards, 3))
    return max(worker, 0.01), max(shard, 0.01)


def shopper_placement(wants_gpu: bool, cluster_resources: dict, env_labels: dict,
                      gpus: float = SHOPPER_GPUS) -> dict:
    """The shopper replicas' placement (`deploy_shopper`'s ``resources`` and ``num_gpus``):
    a backend that wants a GPU (the LLM shopper) goes to cluster.yaml's GPU node type, a
    sliver of ``ecomrlve_gpu`` and `gpus` of a GPU, when the cluster has such a node up;
    otherwise (the template shopper, or no GPU node) it goes with the env workers
    (`env_labels`, possibly empty: anywhere)."""
    if wants_gpu and cluster_resources.get(GPU_NODE_RESOURCE):
        return {"resources": {GPU_NODE_RESOURCE: 0.001},
                "num_gpus": float(gpus) if cluster_resources.get("GPU") else 0.0}
    return {"resources": dict(env_labels), "num_gpus": 0.0}


class ActorSystem:
    """`start()` builds the actors (attributes `workers`, `router`, `scheduler`, `writer`,
    `shopper_client`, `source`, `run_dir`); `shutdown()` kills them all."""

    def __init__(self, spec: SystemSpec):
        self.spec = spec
        self.started = False
        self.workers: list = []
        self.router = None
        self.scheduler = None
        self.scheduler_name: str | None = None
        self.writer = None
        self.shopper_client = None
        self.source = None
        self.run_dir: Path | None = None
        self._worker_args: list = []

    def _catalog_source(self, log: Callable[[str], None]):
        from ecomrlve.catalog_service import Catalog
        from ecomrlve.catalog_service.search import read_meta
        from ecomrlve.catalog_service.shards import CatalogSource

        cfg = self.spec
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
        r = self.spec.env_resource
        return {r: 0.001} if r and ray.cluster_resources().get(r) else {}

    def _placement_nodes(self, labels: dict) -> list[dict]:
        """The alive nodes that may host workers and shards."""
        return [n for n in ray.nodes() if n.get("Alive") and all(n["Resources"].get(r, 0) > 0 for r in labels)]

    def _check_catalog_on_nodes(self, nodes: list[dict]) -> None:
        """With a catalog passed by path, every node in `nodes` must hold the same directory."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        path = self.source.directory
        want = manifest_digest(path)
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

    def start(self, run_dir: Path, policy: Any, log: Callable[[str], None] = lambda s: None, append: bool = False,
              reserved_cpus: float = 0.0) -> "ActorSystem":
        """Build the actors. `run_dir`: the caller's run directory (the scheduler's
        curriculum.json and the writer's parquet go there; `append` keeps the trajectories
        already there). `policy`: the workers' `PolicyClient`. `reserved_cpus`: logical
        CPUs the caller's own actors take (engine, learner)."""
        from ecomrlve.catalog_service.shards import start_shards
        from ecomrlve.scheduler.actor import SCHEDULER_NAME, create_scheduler

        from .env_worker import EnvWorker
        from .run_dir import _writer_actor

        cfg = self.spec
        if not ray.is_initialized():
            raise RuntimeError("call ray.init() (or ecomrlve.actors.ray_session.init_ray()) before starting the actor system")
        self.run_dir = Path(run_dir)
        labels = self._node_resources()
        if labels:  # workers and shards fit on the labelled nodes only
            nodes = self._placement_nodes(labels)
            total = max(sum(n["Resources"].get("CPU", 0.0) for n in nodes) - reserved_cpus, 0.2)
            log(f"placement: workers, shards and the template shopper on the {len(nodes)} node(s) with resource "
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
            from .shopper_service import ShopperClient, backend_wants_gpu, deploy_shopper

            t0 = time.perf_counter()
            place = shopper_placement(backend_wants_gpu(cfg.shopper_backend), ray.cluster_resources(), labels,
                                      cfg.shopper_gpus)
            handle = deploy_shopper(cfg.shopper_backend, max_ongoing_requests=cfg.workers * cfg.max_concurrent * 2,
                                    num_replicas=cfg.shopper_replicas, resources=place["resources"] or None,
                                    num_gpus=place["num_gpus"])
            self.shopper_client = ShopperClient(handle, cfg.shopper_backend)
            where = ", ".join(place["resources"]) or "any node"
            gpu = f", {place['num_gpus']:g} GPU each" if place["num_gpus"] else ""
            log(f"shopper: Serve deployment ({cfg.shopper_backend}) on {where}{gpu}, up in "
                f"{time.perf_counter() - t0:.1f} s")
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
        self.scheduler = create_scheduler(cfg.env_ids, curriculum_cfg, seed=cfg.seed, checkpoint_path=str(ckpt),
                                          checkpoint_every=cfg.checkpoint_every, name=self.scheduler_name,
                                          namespace=NAMESPACE, tasks=cfg.tasks,
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
        self._worker_args = [ray.put(a) for a in (self.source, self.router, policy,
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
        if self.spec.shopper == "serve" and self.shopper_client is not None:
            from .shopper_service import shutdown_shopper

            shutdown_shopper()
        self.workers, self.router, self.scheduler, self.writer = [], None, None, None
        self._worker_args = []
        self.started = False


def manifest_digest(directory: str) -> str | None:
    """blake2b of a catalog directory's manifest (which names its rows and files), or None
    when the directory has none."""
    from ecomrlve.catalog_service.catalog import MANIFEST_FILE

    try:
        return hashlib.blake2b((Path(directory) / MANIFEST_FILE).read_bytes(), digest_size=16).hexdigest()
    except OSError:
        return None


@ray.remote(num_cpus=0)
def _catalog_digest_on_node(directory: str) -> str | None:
    return manifest_digest(directory)


def _wait_name_released(name: str, timeout_s: float = 10.0) -> None:
    """Wait until no live actor holds `name` in our namespace (ray.kill is asynchronous)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return
        time.sleep(0.05)
