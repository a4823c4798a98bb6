"""The actor system on a local multi-node Ray cluster, losing a whole node mid-run.

`ray.cluster_utils.Cluster` starts a head and two worker nodes carrying the custom resources
of cluster.yaml's CPU node type (read from cluster.yaml). A curriculum run (heuristic
policy, small catalog) places its catalog shards and env workers on the worker nodes only,
spread over both; a third of the way through, the worker node hosting the shopper replica
(and two workers and a shard) is removed: its raylet and every process on it killed. The run still finishes with every leased task in the trajectories parquet
exactly once and no episode in error, with the catalog passed by path (a built catalog
directory, memory-mapped on every node) and by object store. The figures (nodes, tasks,
episodes/s, seconds until the lost workers and the shopper answer from the surviving node)
are printed and written to the test's run directory as multinode.json.

Slow suite (``pytest -m slow``): starting three raylets and running two runs with a node
loss takes ~2-3 minutes on two cores. Runs in a loopback-only namespace (`ray_env`); the
cluster is this module's own (the fixture shuts down any Ray session an earlier module left).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EPISODES = 96

pytestmark = pytest.mark.slow


def _env_node_resources() -> dict:
    """The custom resources of cluster.yaml's CPU (env) node type."""
    types = yaml.safe_load((ROOT / "cluster.yaml").read_text())["available_node_types"]
    res = {k: float(v) for k, v in types["cpu_env"]["resources"].items()}
    assert res, "cluster.yaml's cpu_env node type carries no custom resource"
    return res


@pytest.fixture(scope="module")
def cluster(ray_env):
    import ray
    from ray.cluster_utils import Cluster

    from ecomrlve.actors.system import NAMESPACE

    if ray.is_initialized():
        ray.shutdown()
    # detect a dead node within ~2 s (defaults: 5 missed 3 s health checks); results over
    # 8 kB (a batch's trajectories, ~6 kB an episode) stay in the producing node's object
    # store (default 100 kB: they would be inlined to the driver), so they can be lost
    # with their node before the writer fetched them
    system = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
              "health_check_failure_threshold": 3, "max_direct_call_object_size": 8192}
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False,
                                                      "_system_config": system})
    resources = _env_node_resources()
    c.add_node(num_cpus=4, resources=resources)
    c.add_node(num_cpus=4, resources=resources)
    c.wait_for_nodes()
    ray.init(address=c.address, namespace=NAMESPACE, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    yield {"cluster": c, "resources": resources}
    ray.shutdown()
    c.shutdown()


def _env_nodes(c) -> list:
    """The cluster's live worker nodes (every one added here carries the env resources)."""
    return list(c.worker_nodes)


def _node_of(actor, timeout: float = 60) -> str:
    import ray

    return ray.get(actor.__ray_call__.remote(lambda self: __import__("ray").get_runtime_context().get_node_id()),
                   timeout=timeout)


@pytest.fixture(scope="module")
def catalog_dir(tmp_path_factory):
    from ecomrlve.catalog_service.build import build_catalog

    out = tmp_path_factory.mktemp("catalog") / "c4k"
    build_catalog(4000, 0, out)
    return out


@pytest.mark.parametrize("transport", ["path", "object-store"])
def test_run_survives_losing_a_worker_node(cluster, catalog_dir, tmp_path, transport):
    import pyarrow.parquet as pq
    import ray

    from ecomrlve.actors.driver import Driver, RunConfig

    c, resources = cluster["cluster"], cluster["resources"]
    while len(_env_nodes(c)) < 2:  # the previous run lost one: a replacement joins
        c.add_node(num_cpus=4, resources=resources)
        c.wait_for_nodes()
    env_nodes = {n.node_id: n for n in _env_nodes(c)}
    cfg = RunConfig(collection="C4", episodes=EPISODES, workers=4, shards=2, policy="heuristic",
                    catalog_dir=str(catalog_dir), catalog_transport=transport, out=str(tmp_path / "run"),
                    batch_size=2, max_concurrent=4, worker_cpus=0.5, shard_cpus=0.25)
    driver = Driver(cfg)
    log: list[str] = []
    try:
        driver.start(log=log.append)
        assert (driver.system.source.directory is not None) == (transport == "path")
        # placement: shards and workers only on the resource-carrying nodes, spread over both
        worker_nodes = [_node_of(w) for w in driver.system.workers]
        shard_nodes = [_node_of(s) for s in driver.system.router.shards]
        assert set(worker_nodes) == set(env_nodes) and set(shard_nodes) <= set(env_nodes)
        assert set(shard_nodes) == set(env_nodes)  # SPREAD: one shard per node
        head = ray.get_runtime_context().get_node_id()
        assert _node_of(driver.system.scheduler) == head and _node_of(driver.system.writer) == head
        shopper_node = driver.system.shopper_client.handle.stats.remote().result(timeout_s=60)["node_id"]
        assert shopper_node in env_nodes

        kill: dict = {}

        def lose_a_node(drv, stats):
            """A third of the way in, remove the node of the shopper replica (it hosts
            workers and a shard too): every kind of actor is lost at once."""
            if kill or stats["done"] < EPISODES // 3:
                return
            victim = shopper_node
            lost = [i for i, wn in enumerate(worker_nodes) if wn == victim]
            kill.update(node=victim, workers=lost, done_before=stats["done"], t=time.perf_counter())
            c.remove_node(env_nodes[victim], allow_graceful=False)
            kill["removed_s"] = time.perf_counter() - kill["t"]
            kill["waiter"] = threading.Thread(target=wait_for_recovery, args=([drv.system.workers[i] for i in lost],
                                                                               drv.system.shopper_client.handle, victim),
                                              daemon=True)
            kill["waiter"].start()

        def wait_for_recovery(workers, shopper, victim):
            """Seconds from the node's removal until each lost worker, and the shopper,
            answers from another node."""
            deadline = time.monotonic() + 180

            def moved(where) -> bool:
                while time.monotonic() < deadline:
                    try:
                        if where() != victim:
                            return True
                    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError, TimeoutError):
                        pass
                    time.sleep(0.1)
                return False

            if all(moved(lambda w=w: _node_of(w, timeout=5)) for w in workers):
                kill["workers_back_s"] = time.perf_counter() - kill["t"]
            if moved(lambda: shopper.stats.remote().result(timeout_s=5)["node_id"]):
                kill["shopper_back_s"] = time.perf_counter() - kill["t"]

        try:
            res = driver.run(on_result=lose_a_node, log=log.append)
        finally:
            print("\n".join(["", "driver log:"] + log))
        t_end = time.perf_counter()
        assert kill, "no worker node was removed"
        kill["waiter"].join(timeout=200)
        assert "workers_back_s" in kill and "shopper_back_s" in kill, "the lost node's actors never came back"
        new_nodes = {_node_of(driver.system.workers[i]) for i in kill["workers"]}
    finally:
        driver.shutdown()

    assert kill["workers"] and kill["node"] in shard_nodes, "the removed node hosted no worker or shard"
    assert kill["node"] not in new_nodes and new_nodes <= set(env_nodes)  # restarted on the surviving node
    table = pq.read_table(Path(res.run_dir) / "trajectories.parquet")
    ids = table.column("episode_id").to_pylist()
    assert len(ids) == len(set(ids)) == EPISODES  # nothing written twice
    assert sorted(ids) == list(range(res.leased)) and res.leased == EPISODES  # nothing lost
    assert res.written == EPISODES and res.errors == 0
    assert res.retried_tasks > 0  # the lost node's tasks ran again
    reasons = table.column("termination_reason").to_pylist()
    assert not [r for r in reasons if r.startswith("error")]
    state = json.loads((Path(res.run_dir) / "curriculum.json").read_text())
    assert state["pending"] == [] and sum(v["episodes"] for v in state["levels"].values()) >= EPISODES

    figures = {
        "transport": transport, "nodes": "head + 2 worker nodes (one removed mid-run)",
        "node_resources": resources, "workers": cfg.workers, "shards": cfg.shards, "tasks": EPISODES,
        "episodes_per_s": round(res.episodes_per_s, 2), "wall_s": round(res.wall_s, 1),
        "killed_after_episodes": kill["done_before"], "workers_on_lost_node": len(kill["workers"]),
        "node_removal_s": round(kill["removed_s"], 2), "workers_back_s": round(kill["workers_back_s"], 2),
        "shopper_back_s": round(kill["shopper_back_s"], 2),
        "finished_after_kill_s": round(t_end - kill["t"], 1),
        "episodes_per_s_after_kill": round((EPISODES - kill["done_before"]) / (t_end - kill["t"]), 2), "retried_tasks": res.retried_tasks,
        "lost_to_writer": sum(1 for line in log if line.startswith("the writer lost")),
    }
    (Path(res.run_dir) / "multinode.json").write_text(json.dumps(figures, indent=2) + "\n")
    print("\nmultinode:", json.dumps(figures))


def test_path_transport_names_the_node_without_the_catalog(cluster, catalog_dir, monkeypatch):
    """With catalog transport 'path', a node that lacks the directory (or holds another
    catalog) stops the run before any actor starts, with one line naming path and node."""
    import ray

    from ecomrlve.actors import system as drv
    from ecomrlve.actors.driver import RunConfig
    from ecomrlve.catalog_service.shards import CatalogSource

    c, resources = cluster["cluster"], cluster["resources"]
    d = drv.ActorSystem(RunConfig(collection="C1", catalog_dir=str(catalog_dir), catalog_transport="path").system_spec())
    d.source = CatalogSource.from_dir(catalog_dir)
    nodes = d._placement_nodes({k: 0.001 for k in resources})
    assert len(nodes) >= 1 and all(n["Resources"].get(k) for n in nodes for k in resources)
    d._check_catalog_on_nodes(nodes)  # every node sees the same directory: no error

    victim = nodes[-1]["NodeID"]

    @ray.remote(num_cpus=0)
    def missing_on_victim(directory):
        here = ray.get_runtime_context().get_node_id()
        return None if here == victim else drv.manifest_digest(directory)

    monkeypatch.setattr(drv, "_catalog_digest_on_node", missing_on_victim)
    with pytest.raises(ValueError) as err:
        d._check_catalog_on_nodes(nodes)
    msg = str(err.value)
    assert "\n" not in msg and str(catalog_dir) in msg and victim[:8] in msg and "missing" in msg

    @ray.remote(num_cpus=0)
    def other_catalog(directory):
        return "0" * 32

    monkeypatch.setattr(drv, "_catalog_digest_on_node", other_catalog)
    with pytest.raises(ValueError, match="holds another catalog"):
        d._check_catalog_on_nodes(nodes)


def _gpu_node_resources() -> dict:
    """The custom resources of cluster.yaml's GPU node type."""
    types = yaml.safe_load((ROOT / "cluster.yaml").read_text())["available_node_types"]
    return {k: float(v) for k, v in types["gpu"]["resources"].items()}


def test_llm_shopper_replica_runs_on_the_gpu_node(cluster):
    """With a node of cluster.yaml's GPU type up (one logical GPU here), the LLM shopper's
    replica lands on it with its GPU share, as the driver places it; the template shopper's
    placement keeps it on the env nodes. The LLM backend points at an OpenAI-compatible URL
    it never calls, so no model loads."""
    import ray

    from ecomrlve.actors.shopper_service import backend_wants_gpu, deploy_shopper, shutdown_shopper
    from ecomrlve.actors.system import shopper_placement

    c, resources = cluster["cluster"], cluster["resources"]
    gpu_node = c.add_node(num_cpus=1, num_gpus=1, resources=_gpu_node_resources())
    c.wait_for_nodes()
    try:
        env_labels = {k: 0.001 for k in resources}
        place = shopper_placement(backend_wants_gpu("llm"), ray.cluster_resources(), env_labels)
        assert place["resources"] == {"ecomrlve_gpu": 0.001} and place["num_gpus"] > 0
        handle = deploy_shopper("llm", {"base_url": "http://127.0.0.1:9/v1", "model": "unused"},
                                resources=place["resources"], num_gpus=place["num_gpus"])
        stats = handle.stats.remote().result(timeout_s=60)
        assert stats["backend"] == "llm" and stats["node_id"] == gpu_node.node_id
        assert shopper_placement(backend_wants_gpu("template"), ray.cluster_resources(), env_labels) == {
            "resources": env_labels, "num_gpus": 0.0}
    finally:
        shutdown_shopper()
        c.remove_node(gpu_node)
