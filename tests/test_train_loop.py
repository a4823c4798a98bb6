"""The training side of the rollout system without Ray: `EnvWorker.run_rollouts` with a
policy client that feeds a learner, group outcomes to the curriculum, the per-step figures
of `ecomrlve.actors.train` (one schema for both backends), and the trajectory writer's append mode (resume)."""

from __future__ import annotations

import asyncio

import pyarrow.parquet as pq
import pytest

from ecomrlve.actors.env_worker import EnvWorkerImpl
from ecomrlve.actors.rollout import outcomes_of
from ecomrlve.actors.train import _samples, step_record
from ecomrlve.policies.dapo import informative_groups


class _Remote:
    """`handle.method.remote(...)` as an awaitable, like a Ray actor method from async code."""

    def __init__(self, fn):
        self.fn = fn

    async def remote(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


class _Scheduler:
    def __init__(self):
        self.reports: list = []
        self.report = _Remote(self.reports.append)


class _Source:
    def __init__(self, catalog):
        self._catalog = catalog

    def catalog(self):
        return self._catalog


class _HeuristicEpisode:
    def __init__(self):
        from ecomrlve.policies.heuristic import HeuristicPolicy

        self.policy = HeuristicPolicy()
        self.policy.reset()
        self.key = None

    async def act(self, obs):
        await asyncio.sleep(0.001)  # an LLM would be awaited here
        return self.policy.act(obs)


class _LearningClient:
    """A non-local policy client whose `finish` hands the reward to the learner."""

    name = "fake-llm"
    local = False

    def __init__(self):
        self.finished: list = []

    def episode(self, env):
        return _HeuristicEpisode()

    async def finish(self, episode, task, record):
        self.finished.append(task["episode_id"])
        if record["termination_reason"].startswith("error"):
            return None, {}
        return ("traj", task["episode_id"], record["r_total"]), {"reward": record["r_total"],
                                                                 "group": task["task_id"], "version": 3}


def _rollouts(tasks, group_size, axes=None):
    return [{**t, "rollout": g, "episode_id": t["task_id"] * 1000 + g, **({"axes": axes} if axes else {})}
            for t in tasks for g in range(group_size)]


def test_run_rollouts_returns_learner_items_and_reports_groups_once(catalog):
    client = _LearningClient()
    sched = _Scheduler()
    worker = EnvWorkerImpl(0, _Source(catalog), None, client, None, sched, max_concurrent=8, threads=2)
    tasks = [{"task_id": 7, "env_id": "E_CART", "difficulty": 1, "seed": 11},
             {"task_id": 8, "env_id": "E_STATUS", "difficulty": 0, "seed": 12},
             {"task_id": 9, "env_id": "E_NOPE", "difficulty": 0, "seed": 13}]  # raises in make_env
    summaries, records, items = asyncio.run(worker.run_rollouts(_rollouts(tasks, 2, {"T_max": 1})))
    ids = [7000, 7001, 8000, 8001, 9000, 9001]
    assert [s["episode_id"] for s in summaries] == [r["episode_id"] for r in records] == ids
    assert sorted(client.finished) == ids
    assert all(r["turns"] == 1 for r in records[:4])  # the axis override reached reset
    assert all(r["termination_reason"].startswith("error: ") for r in records[4:])
    assert items[:4] == [("traj", i, r["r_total"]) for i, r in zip(ids[:4], records[:4])]
    assert items[4:] == [None, None]
    assert [s.get("group") for s in summaries] == [7, 7, 8, 8, None, None]
    assert all(s["policy_ms"] > 0 and s["env_ms"] > 0 and s["wall_ms"] >= s["policy_ms"] for s in summaries[:4])
    # one report per call; every rollout counts, only rollout 0 carries the task id
    [outcomes] = sched.reports
    assert [o.get("task_id") for o in outcomes] == [7, None, 8, None, 9, None]
    assert [o["env_id"] for o in outcomes] == ["E_CART", "E_CART", "E_STATUS", "E_STATUS", "E_NOPE", "E_NOPE"]


def test_run_rollouts_needs_a_client_that_can_finish(catalog):
    worker = EnvWorkerImpl(0, _Source(catalog), None, "heuristic", None, None)
    with pytest.raises(TypeError, match="finish"):
        asyncio.run(worker.run_rollouts([{"task_id": 1, "env_id": "E_CART", "difficulty": 0, "seed": 1}]))


def test_outcomes_of_plain_tasks_keep_their_task_ids():
    tasks = [{"task_id": 4}, {"task_id": 5}]
    recs = [{"env_id": "E_PD", "difficulty": 2, "is_correct": True}, {"env_id": "E_PD", "difficulty": 3,
                                                                      "is_correct": False}]
    assert outcomes_of(tasks, recs) == [{"env_id": "E_PD", "difficulty": 2, "is_correct": True, "task_id": 4},
                                        {"env_id": "E_PD", "difficulty": 3, "is_correct": False, "task_id": 5}]


def test_informative_groups_match_dynamic_sampling():
    from ecomrlve.policies.dapo import Trajectory, filter_groups

    rewards = {1: [1.0, 0.0, 0.0], 2: [-1.0, -1.0], 3: [0.5], 4: [0.2, 0.2, 0.3], 5: [0.0, 0.0]}
    summaries = [{"group": g, "reward": r} for g, rs in rewards.items() for r in rs] + [{"r_total": -1.0}]
    assert informative_groups(_samples(summaries)) == {1, 4}
    trajs = [Trajectory([], s["reward"], s["group"]) for s in summaries if "reward" in s]
    kept, dropped = filter_groups(trajs)
    assert {t.group for t in kept} == {1, 4} and dropped == 3


def test_step_record_figures():
    base = {"difficulty": 0, "seed": 0}
    summaries = [
        {**base, "r_total": 1.0, "is_correct": True, "termination_reason": "answered", "turns": 3, "version": 4,
         "policy_tokens": 30, "truncated_replies": 1, "wall_ms": 100.0, "policy_ms": 80.0, "env_ms": 6.0,
         "shopper_ms": 4.0},
        {**base, "r_total": -1.0, "is_correct": False, "termination_reason": "invalid action: x", "turns": 1,
         "version": 5, "policy_tokens": 10, "wall_ms": 60.0, "policy_ms": 40.0, "env_ms": 2.0, "shopper_ms": 2.0},
        {**base, "r_total": -1.0, "is_correct": False, "termination_reason": "error: KeyError", "turns": 0,
         "wall_ms": 40.0},
    ]
    m = step_record(summaries, learner_version=5)
    assert m["episodes"] == 3 and m["reward_mean"] == pytest.approx(-1 / 3)
    assert m["success_rate"] == pytest.approx(1 / 3) and m["invalid_rate"] == pytest.approx(1 / 3)
    assert m["error_episodes"] == 1 and m["turns_mean"] == pytest.approx(4 / 3)
    assert m["rollout_policy_tokens"] == 40 and m["truncated_replies"] == 1
    assert m["staleness_max"] == 1 and m["staleness_mean"] == 0.5
    assert m["llm_ms_per_turn"] == 30.0 and m["env_ms_per_turn"] == 2.0 and m["shopper_ms_per_turn"] == 1.5
    assert m["outside_llm_share"] == pytest.approx(1 - 120 / 200)
    assert step_record([], 0)["outside_llm_share"] == 0.0


def _rec(i: int) -> dict:
    return {"episode_id": i, "env_id": "E_CART", "difficulty": 0, "seed": i, "actions": "[]", "messages": "[]",
            "r_task": 0.0, "r_eff": 0.0, "r_hall": 0.0, "r_total": 0.0, "is_correct": False,
            "termination_reason": "answered", "turns": 1, "worker": "0", "policy": "p", "wall_ms": 1.0}


def test_trajectory_writer_append_keeps_earlier_episodes(tmp_path):
    from ecomrlve.actors.run_dir import TRAJECTORY_FILE, TrajectoryWriterImpl

    w = TrajectoryWriterImpl(str(tmp_path))
    assert w.write([_rec(1), _rec(2)]) == 2
    w.close()
    w = TrajectoryWriterImpl(str(tmp_path), append=True)
    assert w.write([_rec(2), _rec(3)]) == 1  # 2 is already in the file
    assert w.close() == {"path": str(tmp_path / TRAJECTORY_FILE), "episodes": 3, "duplicates_dropped": 1}
    assert pq.read_table(tmp_path / TRAJECTORY_FILE).column("episode_id").to_pylist() == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == [TRAJECTORY_FILE]
    TrajectoryWriterImpl(str(tmp_path)).close()  # without append a new run starts empty
    assert pq.read_table(tmp_path / TRAJECTORY_FILE).num_rows == 0


def test_trajectory_writer_killed_run_keeps_its_flushed_parts_and_resume_takes_them_over(tmp_path):
    """A run killed mid-way (never closed) loses only its unflushed records: the last closed
    file stays whole, every flushed part is a whole parquet file that `read_trajectories`
    reads, a half-written part is ignored, and a resumed run counts all of it as written."""
    from ecomrlve.actors.run_dir import TRAJECTORY_FILE, TRAJECTORY_PARTS, TrajectoryWriterImpl, read_trajectories
    from ecomrlve.actors.sft import read_episodes

    w = TrajectoryWriterImpl(str(tmp_path))
    w.write([_rec(1), _rec(2)])
    w.close()
    killed = TrajectoryWriterImpl(str(tmp_path), append=True, row_group=100)
    killed.write([_rec(i) for i in range(3, 253)])  # past a row group: flushed as one part
    killed.write([_rec(i) for i in range(253, 290)])  # 37 records stay in the buffer
    del killed  # no close: as if the process died
    (tmp_path / TRAJECTORY_PARTS / "part-000009.parquet.tmp").write_bytes(b"PAR1 half a part")  # died mid-flush
    assert pq.read_table(tmp_path / TRAJECTORY_FILE).column("episode_id").to_pylist() == [1, 2]
    assert read_trajectories(tmp_path).column("episode_id").to_pylist() == list(range(1, 253))
    assert [r["episode_id"] for r in read_episodes(tmp_path)] == list(range(1, 253))  # SFT reads it too
    w = TrajectoryWriterImpl(str(tmp_path), append=True)
    assert w.write([_rec(252), _rec(253), _rec(254)]) == 2  # 252 was flushed before the kill
    assert w.close() == {"path": str(tmp_path / TRAJECTORY_FILE), "episodes": 254, "duplicates_dropped": 1}
    assert pq.read_table(tmp_path / TRAJECTORY_FILE).column("episode_id").to_pylist() == list(range(1, 255))
    assert sorted(p.name for p in tmp_path.iterdir()) == [TRAJECTORY_FILE]
    assert w.close()["episodes"] == 254  # closing twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        w.write([_rec(999)])


def test_trajectory_writer_flushes_a_part_after_flush_every_s(tmp_path):
    """At LLM speed a row group can take an hour: a write after `flush_every_s` flushes what
    is buffered, so a kill loses at most that long of episodes."""
    from ecomrlve.actors.run_dir import TRAJECTORY_PARTS, TrajectoryWriterImpl, read_trajectories

    w = TrajectoryWriterImpl(str(tmp_path), flush_every_s=3600)
    w.write([_rec(1)])
    assert not list((tmp_path / TRAJECTORY_PARTS).iterdir())
    w.flush_every_s = 0.0
    w.write([_rec(2)])
    assert [p.name for p in (tmp_path / TRAJECTORY_PARTS).iterdir()] == ["part-000000.parquet"]
    assert read_trajectories(tmp_path).column("episode_id").to_pylist() == [1, 2]
