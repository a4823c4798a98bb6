"""The Ray actor system: scheduler checkpoints, sharded search, the driver end to end, fault
tolerance, metrics and `ray job submit` (cluster.yaml: tests/test_cluster_yaml.py).

Network hygiene: every test here that starts Ray runs with usage stats off, the report URL
on loopback and HOME in a temp dir holding ``ray_bootstrap_config.yaml`` (the `ray_env`
fixture), and only inside a loopback-only network namespace (CI runs pytest under
``unshare -n``). Outside one these tests are skipped, unless ECOMRLVE_RAY_TESTS_ANYWHERE=1.
One small Ray session (2 CPUs) is shared by the module. The CLI and cluster-config tests
start no Ray and run anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_session(ray_env):
    import ray

    from ecomrlve.actors.ray_session import init_ray

    port = _free_port()
    init_ray(num_cpus=2, metrics_export_port=port, include_dashboard=False,
             _system_config={"metrics_report_interval_ms": 1000})
    yield {"metrics_port": port}
    ray.shutdown()


@pytest.fixture(scope="module")
def source(ray_session, catalog):
    from ecomrlve.catalog_service.shards import CatalogSource

    return CatalogSource.from_catalog(catalog)


# --------------------------------------------------------------------------- scheduler


def test_scheduler_checkpoint_restart_restores_exact_state(ray_session, tmp_path):
    import ray

    from ecomrlve.scheduler import Curriculum, CurriculumConfig
    from ecomrlve.scheduler.actor import create_scheduler

    ckpt = tmp_path / "curriculum.json"
    cfg = {"tau_num": 4, "first_seed": 100}
    sched = create_scheduler(["E_CART", "E_SUB"], cfg, seed=5, checkpoint_path=str(ckpt), checkpoint_every=3,
                             name="test-sched-ckpt")
    twin = Curriculum(["E_CART", "E_SUB"], CurriculumConfig(**cfg), seed=5)
    for i in range(12):
        tasks = ray.get(sched.lease.remote(5))
        assert tasks == [t.as_dict() for t in twin.lease(5)]
        outs = [{**t, "is_correct": (t["seed"] + i) % 5 != 0} for t in tasks[:4]]
        outs = [{k: o[k] for k in ("env_id", "difficulty", "is_correct", "task_id")} for o in outs]
        assert ray.get(sched.report.remote(outs)) == twin.report(outs)
    before = ray.get(sched.state.remote())
    assert before == twin.state()
    assert any(lv["h"] > 0 for lv in before["levels"].values())
    assert ray.get(sched.checkpoint.remote()) == str(ckpt.resolve())
    assert json.loads(ckpt.read_text()) == before

    pid = ray.get(sched.__ray_call__.remote(lambda self: os.getpid()))
    ray.kill(sched, no_restart=False)  # crash: Ray restarts it, it reloads its checkpoint
    _wait_for_restart(sched, pid)
    after = ray.get(sched.state.remote(), timeout=60)
    assert after == before
    assert ray.get(sched.summary.remote())["restored_from"] == str(ckpt.resolve())
    # and it continues exactly like the uninterrupted curriculum
    assert ray.get(sched.lease.remote(7)) == [t.as_dict() for t in twin.lease(7)]

    # explicit restore into a fresh actor (the lease above checkpointed again)
    other = create_scheduler(["E_CART"], name="test-sched-restore")
    assert ray.get(other.restore.remote(str(ckpt))) == ray.get(sched.state.remote()) == twin.state()
    ray.kill(sched, no_restart=True)
    ray.kill(other, no_restart=True)


def _wait_for_restart(actor, old_pid: int, timeout: float = 90) -> int:
    """ray.kill is asynchronous: wait until a new process serves the actor."""
    import ray

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            pid = ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=30)
            if pid != old_pid:
                return pid
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            pass
        time.sleep(0.2)
    raise AssertionError("the actor was not restarted")


def test_lease_after_crash_never_reuses_task_ids(ray_session, tmp_path):
    import ray

    from ecomrlve.scheduler.actor import create_scheduler

    sched = create_scheduler(["E_CART"], checkpoint_path=str(tmp_path / "c.json"), checkpoint_every=1000,
                             name="test-sched-ids")
    first = ray.get(sched.lease.remote(10))
    pid = ray.get(sched.__ray_call__.remote(lambda self: os.getpid()))
    ray.kill(sched, no_restart=False)
    _wait_for_restart(sched, pid)
    second = ray.get(sched.lease.remote(10), timeout=60)
    ids = [t["task_id"] for t in first + second]
    assert len(set(ids)) == 20
    ray.kill(sched, no_restart=True)


# --------------------------------------------------------------------------- sharded search

QUERIES = [
    ("usb-c charger", None, 10),
    ("black", None, 400),
    ("", None, 25),
    ("", {"in_stock": True, "price_max": 40}, 30),
    ("red shirt", {"price_min": 5, "price_max": 60}, 50),
    ("wireless", {"rating_min": 4.0, "in_stock": True}, 100),
    ("steel", {"ship_days_max": 3}, 7),
    ("qqqzzz unknownword", None, 10),
    ("organic", {"price_max": 0.01}, 10),
]


def _brand_and_category(catalog):
    from ecomrlve.catalog_service.filters import category_path

    return catalog.value("brand", 11), category_path(catalog, 11)


def test_sharded_search_equals_unsharded(ray_session, source, catalog):
    import ray

    from ecomrlve.catalog_service.shards import RoutedCatalog, start_shards

    brand, path = _brand_and_category(catalog)
    queries = QUERIES + [
        ("", {"brand": brand}, 40),
        (catalog.value("title", 11), {"category": path.split(" > ")[0]}, 60),
        (catalog.value("title", 11), {"brand": brand.upper(), "in_stock": True}, 20),
        ("charger", {"attributes": {"color": "black"}}, 30),
    ]
    router = start_shards(source, 3, num_cpus=0.1)
    try:
        for q, f, k in queries:
            want = catalog.search(q, f, k)
            got = router.search(q, f, k)
            assert np.array_equal(got.rows, want.rows), (q, f)
            assert np.array_equal(got.scores, want.scores), (q, f)
        assert sum(len(router.search(q, f, k).rows) > 0 for q, f, k in queries) >= 8

        # one batched fan-out for many queries
        many = router.search_many(queries)
        for (q, f, k), got in zip(queries, many):
            assert np.array_equal(got.rows, catalog.search(q, f, k).rows)

        # concurrent callers are micro-batched and each gets its own answer
        results: dict[int, object] = {}

        def call(i):
            q, f, k = queries[i % len(queries)]
            results[i] = router.search(q, f, k)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(48)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, got in results.items():
            q, f, k = queries[i % len(queries)]
            assert np.array_equal(got.rows, catalog.search(q, f, k).rows)
        assert router.n_requests > router.n_batches  # at least some batching happened

        # bad input fails in the caller with the field named; the shards keep serving
        with pytest.raises(ValueError, match="price_min"):
            router.search("x", {"price_min": -3}, 5)
        with pytest.raises(ValueError):
            router.search("x", None, "many")
        view = RoutedCatalog(catalog, router)
        assert np.array_equal(view.search("usb-c charger").rows, catalog.search("usb-c charger").rows)
        assert view.product(3) == catalog.product(3)
        assert view.leaf_vocabulary("Tents") == catalog.leaf_vocabulary("Tents") != {}
    finally:
        for s in router.shards:
            ray.kill(s, no_restart=True)


# --------------------------------------------------------------------------- driver end to end


def _replay_in_process(catalog, row):
    from ecomrlve.envs import make_env

    env = make_env(row["env_id"], catalog)
    env.reset(seed=row["seed"], options={"difficulty": row["difficulty"]})
    for action in json.loads(row["actions"]):
        env.step(action)
    return env


@pytest.fixture(scope="module")
def e2e_run(ray_session, tmp_path_factory):
    from ecomrlve.actors.driver import RunConfig, run

    out = tmp_path_factory.mktemp("runs") / "e2e"
    cfg = RunConfig(collection="C1", episodes=20, workers=2, shards=2, policy="oracle", catalog_size=20_000,
                    catalog_seed=0, out=str(out), batch_size=3, max_concurrent=6)
    return run(cfg)


def test_end_to_end_run_writes_every_task_once(e2e_run, catalog):
    import pyarrow.parquet as pq

    from ecomrlve.actors.run_dir import TRAJECTORY_SCHEMA

    res = e2e_run
    run_dir = Path(res.run_dir)
    table = pq.read_table(run_dir / "trajectories.parquet")
    assert table.schema.equals(TRAJECTORY_SCHEMA)
    ids = table.column("episode_id").to_pylist()
    assert sorted(ids) == list(range(20))  # every leased task, exactly once
    assert res.leased == res.written == res.episodes == 20 and res.errors == 0
    rows = table.to_pylist()
    assert {r["env_id"] for r in rows} == {"E_CART"}
    assert {r["worker"] for r in rows} == {"0", "1"}
    assert all(r["is_correct"] for r in rows)  # the oracle solves every episode
    assert len({r["seed"] for r in rows}) == 20

    state = json.loads((run_dir / "curriculum.json").read_text())
    assert state["next_task"] == 20 and state["pending"] == []
    assert state["levels"]["E_CART"]["episodes"] == 20
    for name in ("summary.md", "difficulty.png", "success.png", "config.json"):
        assert (run_dir / name).stat().st_size > 0
    assert "| E_CART | 20 | 100.0% |" in (run_dir / "summary.md").read_text()

    # the Ray path (sharded search, shopper service, worker threads) changes nothing:
    # replaying the actions in process gives the same transcript and reward
    for row in rows[:5]:
        env = _replay_in_process(catalog, row)
        assert json.loads(row["messages"]) == json.loads(json.dumps(env.messages, default=str))
        assert row["r_total"] == env.reward_info.as_dict()["r_total"]


def test_metrics_reach_prometheus(e2e_run, ray_session):
    port = ray_session["metrics_port"]
    deadline = time.time() + 60
    names: set[str] = set()
    while time.time() < deadline:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except OSError:
            body = ""
        names = {line.split("{")[0].split(" ")[0] for line in body.splitlines() if line.startswith("ray_ecomrlve")}
        if {"ray_ecomrlve_episodes_finished_total", "ray_ecomrlve_search_latency_ms_bucket"} <= names or (
            any(n.startswith("ray_ecomrlve_episodes_finished") for n in names)
            and any(n.startswith("ray_ecomrlve_shopper_latency_ms") for n in names)
        ):
            break
        time.sleep(1)
    assert any(n.startswith("ray_ecomrlve_episodes_finished") for n in names), names
    assert any(n.startswith("ray_ecomrlve_shopper_latency_ms") for n in names), names
    assert any(n.startswith("ray_ecomrlve_episode_reward") for n in names), names


# --------------------------------------------------------------------------- fault tolerance


def test_killed_worker_and_shard_lose_and_duplicate_nothing(ray_session, tmp_path):
    import pyarrow.parquet as pq
    import ray

    from ecomrlve.actors.driver import RunConfig, run

    killed: dict = {}

    def chaos(driver, stats):
        if killed or stats["done"] < 4:
            return
        running = {}  # worker -> its calls that have not finished yet
        for ref, call in driver.dispatcher.inflight.items():
            if not ray.wait([ref], timeout=0)[0]:
                running[call.worker] = running.get(call.worker, 0) + len(call.tasks)
        if not running:
            return
        w = max(running, key=running.get)
        killed["worker"] = (w, running[w])
        ray.kill(driver.system.workers[w], no_restart=False)
        ray.kill(driver.system.router.shards[0], no_restart=False)
        killed["shard"] = 0

    cfg = RunConfig(collection="C1", episodes=48, workers=2, shards=2, policy="heuristic", catalog_size=20_000,
                    out=str(tmp_path / "chaos"), batch_size=2, max_concurrent=6)
    res = run(cfg, on_result=chaos)
    assert killed and killed["worker"][1] > 0
    ids = pq.read_table(Path(res.run_dir) / "trajectories.parquet").column("episode_id").to_pylist()
    assert len(ids) == len(set(ids)) == 48  # nothing duplicated
    assert sorted(ids) == list(range(res.leased))  # nothing lost
    assert res.retried_tasks > 0  # the dead worker's tasks ran again elsewhere
    assert res.errors == 0  # the restarted shard answered every search
    state = json.loads((Path(res.run_dir) / "curriculum.json").read_text())
    assert state["pending"] == [] and state["levels"]["E_CART"]["episodes"] == 48


# --------------------------------------------------------------------------- ray job submit


@pytest.mark.slow
def test_ray_job_submit_runs_ecomrlve(ray_env, tmp_path):
    """`ray start --head` + `ray job submit --working-dir . -- ecomrlve run ...`."""
    if shutil.which("ecomrlve") is None or shutil.which("ray") is None:
        pytest.skip("needs the `ecomrlve` and `ray` console scripts (pip install -e .)")
    env = {**ray_env, "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    # token auth stays on: make a token (in the test's HOME) for the head and the CLI client
    subprocess.run(["ray", "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    gcs, dash = _free_port(), _free_port()
    temp_dir = tempfile.mkdtemp(prefix="ecr-", dir="/tmp")  # AF_UNIX paths must stay short
    head = subprocess.Popen(
        ["ray", "start", "--head", "--block", f"--port={gcs}", "--num-cpus=2", "--include-dashboard=true",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--temp-dir={temp_dir}",
         "--disable-usage-stats"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        address = f"http://127.0.0.1:{dash}"
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(address, timeout=2)
                break
            except OSError as exc:
                if getattr(exc, "code", None):  # an HTTP answer (e.g. 401) means it is up
                    break
                if head.poll() is not None:
                    pytest.fail(f"ray start exited: {head.stdout.read()}")
                time.sleep(1)
        out = tmp_path / "job-run"
        job = subprocess.run(
            ["ray", "job", "submit", f"--address={address}", "--working-dir", str(ROOT), "--",
             "ecomrlve", "run", "--collection", "C1", "--policy", "oracle", "--episodes", "12",
             "--workers", "1", "--shards", "2", "--catalog-size", "4000", "--out", str(out), "--no-live"],
            env=env, capture_output=True, text=True, timeout=400,
        )
        assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-4000:]
        assert "succeeded" in (job.stdout + job.stderr).lower()
        import pyarrow.parquet as pq

        ids = pq.read_table(out / "trajectories.parquet").column("episode_id").to_pylist()
        assert sorted(ids) == list(range(12))
    finally:  # stop only the cluster this test started (its own process group)
        for sig, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
            try:
                os.killpg(head.pid, sig)
            except ProcessLookupError:
                break
            try:
                head.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        shutil.rmtree(temp_dir, ignore_errors=True)


# --------------------------------------------------------------------------- CLI (no Ray started)


def test_cli_registers_run_and_catalog_and_rejects_bad_input(capsys):
    from ecomrlve.actors import cli
    from ecomrlve.actors.config import parse_model

    parser = cli.build_parser()
    args = parser.parse_args(["run", "--episodes", "5", "--policy", "oracle", "--collection", "C1"])
    cfg = parse_model(cli.RunCommand, args)
    assert (cfg.episodes, cfg.policy, cfg.collection, cfg.catalog_size) == (5, "oracle", "C1", 20_000)
    assert parser.parse_args(["catalog", "info", "somewhere"]).func is not None
    # bad values are named and exit 2 before any Ray cluster starts
    assert cli.main(["run", "--episodes", "0", "--collection", "C1"]) == 2
    assert "episodes" in capsys.readouterr().err
    assert cli.main(["run", "--collection", "C9"]) == 2
    assert "C9" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--policy", "gpt"])

    seen = []
    cli.register_command(lambda sub: seen.append(sub.add_parser("hello").set_defaults(func=lambda a: 0)))
    try:
        assert cli.main(["hello"]) == 0 and seen
    finally:
        cli.COMMANDS.pop()


# --------------------------------------------------------------------------- env worker in process (no Ray started)


def test_llm_shopper_goes_to_the_gpu_node_type_and_the_template_with_the_env_workers():
    """cluster.yaml puts the LLM shopper on the `gpu` node type: a backend that wants a GPU
    asks for a sliver of ecomrlve_gpu and a GPU share when such a node is up; the template
    shopper (and any backend, without a GPU node) stays with the env workers."""
    from ecomrlve.actors.shopper_service import backend_wants_gpu
    from ecomrlve.actors.system import SHOPPER_GPUS, shopper_placement

    assert backend_wants_gpu("llm") and not backend_wants_gpu("template")
    assert not backend_wants_gpu("ecomrlve.actors.shopper_service:TemplateBackend")
    with pytest.raises(ValueError, match="unknown shopper backend 'nope'"):
        backend_wants_gpu("nope")
    env = {"ecomrlve_env": 0.001}
    gpu_cluster = {"CPU": 40.0, "GPU": 1.0, "ecomrlve_env": 1000.0, "ecomrlve_gpu": 1000.0}
    assert shopper_placement(True, gpu_cluster, env) == {"resources": {"ecomrlve_gpu": 0.001}, "num_gpus": SHOPPER_GPUS}
    assert shopper_placement(False, gpu_cluster, env) == {"resources": env, "num_gpus": 0.0}
    no_gpu_node = {"CPU": 32.0, "ecomrlve_env": 1000.0}
    assert shopper_placement(True, no_gpu_node, env) == {"resources": env, "num_gpus": 0.0}
    assert shopper_placement(True, {"CPU": 2.0}, {}) == {"resources": {}, "num_gpus": 0.0}  # a laptop


def test_env_worker_records_errors_and_uses_the_shopper_backend(catalog):
    import asyncio

    from ecomrlve.actors.env_worker import EnvWorkerImpl
    from ecomrlve.actors.shopper_service import LocalShopperClient, register_backend, validate_request
    from ecomrlve.catalog_service.shards import CatalogSource

    class Shout:
        name = "shout"

        def phrase(self, request):
            return request["text"].upper()

    register_backend("shout", lambda **_: Shout())
    src = CatalogSource.in_process(catalog)
    tasks = [
        {"env_id": "E_CART", "difficulty": 2, "seed": 11, "task_id": 0},
        {"env_id": "E_NOPE", "difficulty": 0, "seed": 12, "task_id": 1},
        {"env_id": "E_CART", "difficulty": 0, "seed": 13, "task_id": 2},
    ]
    worker = EnvWorkerImpl(7, src, None, "oracle", LocalShopperClient("shout"), None, max_concurrent=2, threads=2)
    summaries, records = asyncio.run(worker.run_tasks(tasks))
    assert [s["episode_id"] for s in summaries] == [0, 1, 2]
    bad = records[1]
    assert bad["termination_reason"].startswith("error: ValueError") and "E_NOPE" in bad["termination_reason"]
    assert not bad["is_correct"] and bad["r_total"] == -1.0
    for rec in (records[0], records[2]):
        assert rec["is_correct"] and rec["worker"] == "7" and rec["policy"] == "oracle"
        users = [m["content"] for m in json.loads(rec["messages"]) if m["role"] == "user"]
        assert users and all(u == u.upper() for u in users)  # every shopper message went through phrase()
    with pytest.raises(ValueError, match="text"):
        validate_request({"txt": "hi"})


# --------------------------------------------------------------------------- eval on actors


def test_eval_on_actors_gives_the_in_process_rows_and_summary(ray_session, tmp_path):
    """`ecomrlve eval --ray`: the scheduler serves exactly the evaluation's task list (fixed
    mode, nothing adapts), the dispatcher plays it on env workers over catalog shards, and
    rows and summary equal the in-process path's (wall time and worker aside)."""
    from ecomrlve.actors.evaluate import EvalConfig, run_eval

    base = dict(policy="heuristic", envs="E_CART,E_PD", difficulties="0,6", seeds=3, k=2, catalog_size=2000)
    local = run_eval(EvalConfig(**base), write=False)
    actors = run_eval(EvalConfig(**base, ray=True, workers=2, shards=2, out=str(tmp_path / "eval")))
    drop = {"wall_ms", "worker"}
    strip = lambda table: [{k: v for k, v in r.items() if k not in drop} for r in table.to_pylist()]  # noqa: E731
    assert len(strip(actors.episodes)) == 2 * 2 * 3 * 2
    assert strip(actors.episodes) == strip(local.episodes)
    assert actors.summary == local.summary
    assert (tmp_path / "eval" / "summary.md").exists()
