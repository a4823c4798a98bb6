"""`ecomrlve eval` (pass^k, tables, heat map, parquet) and `ecomrlve replay`."""

from __future__ import annotations

import json
import math

import pyarrow.parquet as pq
import pytest

from ecomrlve.actors.evaluate import EVAL_SEED_BASE, EvalConfig, PolicySpec, pass_hat_k, run_eval, summarize
from ecomrlve.actors.replay import replay_episode
from ecomrlve.envs import env_class

EVAL_ENVS = "E_CART,E_STATUS"


def _require(*env_ids):
    for env_id in env_ids:
        try:
            env_class(env_id)
        except ImportError:
            pytest.skip(f"{env_id} is not implemented in this checkout yet")


def _cli(*argv) -> int:
    from ecomrlve.actors.cli import main

    return main(list(argv))


# --------------------------------------------------------------------------- pass^k


def test_pass_hat_k_is_tau_bench_estimator():
    assert pass_hat_k(4, 4, 4) == 1.0
    assert pass_hat_k(3, 4, 4) == 0.0
    assert pass_hat_k(3, 4, 2) == pytest.approx(3 / 6)
    assert pass_hat_k(2, 5, 1) == pytest.approx(0.4)
    assert pass_hat_k(7, 10, 3) == pytest.approx(math.comb(7, 3) / math.comb(10, 3))
    with pytest.raises(ValueError):
        pass_hat_k(1, 2, 3)


def test_summarize_averages_pass_k_over_tasks():
    rows = []
    for seed, wins in ((1, [1, 1, 1, 1]), (2, [1, 1, 0, 0])):
        for t, w in enumerate(wins):
            rows.append({"env_id": "E_CART", "difficulty": 0, "seed": seed, "is_correct": bool(w), "r_total": 1.0 if w else -1.0,
                         "turns": 2, "termination_reason": "answered", "trial": t})
    (cell,) = summarize(rows, k=2)
    assert cell["success_rate"] == 0.75 and cell["tasks"] == 2 and cell["episodes"] == 8
    assert cell["pass_k"] == pytest.approx((1 + 1 / 6) / 2)
    assert cell["mean_reward"] == pytest.approx(0.5)


def test_policy_specs():
    assert PolicySpec("heuristic").deterministic and PolicySpec("oracle").deterministic
    with pytest.raises(ValueError, match="unknown policy"):
        PolicySpec("random")
    with pytest.raises(ValueError, match="unknown policy"):
        PolicySpec("hf:")
    spec = PolicySpec("hf:some/model")
    assert spec.is_llm and not spec.deterministic and spec.target == "some/model"
    with pytest.raises(ValueError, match="engine option"):
        EvalConfig(policy="openai:http://127.0.0.1:9/v1", engine={"temprature": 0})


def test_openai_engine_policy_against_a_local_chat_server(catalog, tmp_path):
    """``openai:<url>``: an OpenAI-compatible server on 127.0.0.1 (a stub that always answers);
    episodes advance in batches, trials carry the trial index as the policy seed."""
    _require("E_CART")
    pytest.importorskip("fastapi")
    from fastapi import FastAPI

    from ecomrlve.actors.openenv_server import start_background

    try:
        PolicySpec("openai:http://127.0.0.1:9/v1").check_available()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    seen = []
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(body: dict):
        seen.append((body["model"], body.get("seed"), body["messages"][-1]["role"]))
        content = '{"assistant_message": "Here you go.", "answer": {"env": "E_CART", "done": true}}'
        return {"choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}

    server, thread, url = start_background(app)
    try:
        cfg = EvalConfig(policy=f"openai:{url}/v1", envs="E_CART", difficulties=[0], seeds=3, k=2,
                         engine={"model": "stub", "temperature": 0.0}, out=str(tmp_path / "ev"))
        res = run_eval(cfg, catalog=catalog)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    rows = res.episodes.to_pylist()
    assert len(rows) == 6 and not any(r["replicated"] for r in rows)
    assert all(r["termination_reason"] == "answered" for r in rows), [r["termination_reason"] for r in rows]
    assert {r["policy_seed"] for r in rows} == {0, 1}
    assert len(seen) == 6 and {m for m, _, _ in seen} == {"stub"} and {role for _, _, role in seen} == {"user"}
    (cell,) = res.summary
    assert cell["n_trials"] == 2 and cell["k"] == 2


def test_engine_failure_is_recorded_not_raised(catalog, tmp_path):
    _require("E_CART")
    try:
        PolicySpec("openai:http://127.0.0.1:9/v1").check_available()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    cfg = EvalConfig(policy="openai:http://127.0.0.1:9/v1", envs="E_CART", difficulties=[0], seeds=2, k=1,
                     out=str(tmp_path / "ev"))
    res = run_eval(cfg, catalog=catalog, write=False)  # port 9 on loopback: connection refused
    rows = res.episodes.to_pylist()
    assert len(rows) == 2 and all(r["termination_reason"].startswith("error:") for r in rows)
    assert res.summary[0]["errors"] == 2 and res.summary[0]["success_rate"] == 0.0


# --------------------------------------------------------------------------- eval


def test_eval_writes_tables_heatmap_and_parquet(catalog, tmp_path):
    _require("E_CART", "E_STATUS")
    cfg = EvalConfig(policy="heuristic", envs=EVAL_ENVS, difficulties="0,4", seeds=3, k=2, out=str(tmp_path / "ev"))
    res = run_eval(cfg, catalog=catalog)
    files = res.files
    for f in files.values():
        assert f.is_file() and f.stat().st_size > 0, f
    episodes = pq.read_table(files["episodes.parquet"]).to_pylist()
    assert len(episodes) == 2 * 2 * 3 * 2
    assert all(r["seed"] >= EVAL_SEED_BASE for r in episodes)
    assert len({r["episode_id"] for r in episodes}) == len(episodes)
    # deterministic policy: trials after the first are copies, and pass^k equals pass^1
    assert sum(r["replicated"] for r in episodes) == len(episodes) // 2
    summary = pq.read_table(files["summary.parquet"]).to_pylist()
    assert [(r["env_id"], r["difficulty"]) for r in summary] == [("E_CART", 0), ("E_CART", 4), ("E_STATUS", 0), ("E_STATUS", 4)]
    for r in summary:
        assert r["pass_k"] == pytest.approx(r["success_rate"]) and r["k"] == 2 and r["n_trials"] == 2
    md = files["summary.md"].read_text()
    assert "| env | d | tasks | episodes | success | mean reward | pass^2 |" in md and "**all**" in md
    assert files["heatmap.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads(files["config.json"].read_text())
    assert config["catalog_size"] == 20_000 and config["shopper_backend"] == "template"


def test_rerun_deterministic_trials_agree(catalog, tmp_path):
    _require("E_CART")
    cfg = EvalConfig(policy="oracle", envs="E_CART", difficulties=[3], seeds=2, k=3, rerun_deterministic=True,
                     out=str(tmp_path / "ev"))
    res = run_eval(cfg, catalog=catalog, write=False)
    rows = res.episodes.to_pylist()
    assert not any(r["replicated"] for r in rows) and {r["policy_seed"] for r in rows} == {0, 1, 2}
    for seed in {r["seed"] for r in rows}:
        trials = [r for r in rows if r["seed"] == seed]
        assert len({(r["actions"], r["messages"], r["r_total"]) for r in trials}) == 1
    (cell,) = res.summary
    assert cell["pass_k"] == cell["success_rate"] == 1.0  # the oracle solves every episode


def test_eval_cli(tmp_path, capsys):
    _require("E_CART")
    out = tmp_path / "ev"
    rc = _cli("eval", "--policy", "oracle", "--envs", "E_CART", "--difficulties", "0,2", "--seeds", "2", "--k", "2",
              "--trials", "3", "--catalog-size", "20000", "--out", str(out))
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| E_CART | 2 | 2 | 6 | 100.0% |" in printed
    assert (out / "heatmap.png").is_file()
    assert _cli("eval", "--envs", "E_NOPE", "--out", str(tmp_path / "x")) == 2
    assert _cli("eval", "--k", "3", "--trials", "2", "--out", str(tmp_path / "x")) == 2
    assert _cli("eval", "--difficulties", "0,x", "--out", str(tmp_path / "x")) == 2


# --------------------------------------------------------------------------- replay


def _record_run(run_dir, catalog, env_id="E_CART", n=3, close=True):
    """A run directory in actors/run_dir.py's schema, written without Ray (`close=False`:
    as a run killed after flushing its records leaves it)."""
    from ecomrlve.actors.rollout import Episode, play
    from ecomrlve.actors.run_dir import TrajectoryWriterImpl, write_config
    from ecomrlve.policies import HeuristicPolicy

    writer = TrajectoryWriterImpl(str(run_dir))
    for i in range(n):
        episode = Episode({"env_id": env_id, "difficulty": 2 + i, "seed": i, "episode_id": 100 + i}, catalog=catalog)
        play([episode], lambda e: HeuristicPolicy())
        writer.write([episode.record("heuristic", "test", wall_ms=1.0)])
    if close:
        writer.close()
    else:
        writer.flush()
    write_config(run_dir, {"catalog_size": 20_000, "catalog_seed": 0, "catalog_dir": None, "shopper_backend": "template"})


def test_replay_reproduces_recorded_rewards(catalog, tmp_path, capsys):
    _require("E_CART")
    run = tmp_path / "run"
    _record_run(run, catalog)
    for eid in (100, 101, 102):
        res = replay_episode(run, eid, catalog=catalog)
        assert res.identical, res.diffs
        assert res.messages_checked and res.replayed["r_total"] == res.recorded["r_total"]
    assert _cli("replay", str(run), "101") == 0
    out = capsys.readouterr().out
    assert "identical" in out and "shopper" in out and "r_total" in out
    assert _cli("replay", str(run), "999") == 2
    assert _cli("replay", str(tmp_path / "missing"), "1") == 2


def test_replay_an_episode_of_a_killed_run(catalog, tmp_path):
    """A run killed before closing has only trajectory parts: replay reads them."""
    _require("E_CART")
    run = tmp_path / "run"
    _record_run(run, catalog, n=2, close=False)
    assert not (run / "trajectories.parquet").exists()
    assert replay_episode(run, 101, catalog=catalog).identical
    assert _cli("replay", str(run), "101", "--quiet") == 0


def test_replay_detects_a_different_reward(catalog, tmp_path, capsys):
    import pyarrow as pa

    _require("E_CART")
    run = tmp_path / "run"
    _record_run(run, catalog, n=1)
    path = run / "trajectories.parquet"
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[0]["r_total"] += 0.25
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    res = replay_episode(run, 100, catalog=catalog)
    assert not res.identical and any(d.startswith("r_total") for d in res.diffs)
    assert _cli("replay", str(run), "100", "--quiet") == 1
    assert "differs" in capsys.readouterr().out


def test_replay_an_eval_episode(catalog, tmp_path):
    _require("E_STATUS")
    cfg = EvalConfig(policy="heuristic", envs="E_STATUS", difficulties=[5], seeds=2, k=1, out=str(tmp_path / "ev"))
    res = run_eval(cfg, catalog=catalog)
    for row in res.episodes.to_pylist():
        assert replay_episode(res.out, row["episode_id"], catalog=catalog).identical


# --------------------------------------------------------------------------- datasets


def test_parquet_files_load_with_datasets(catalog, tmp_path, monkeypatch):
    _require("E_CART", "E_STATUS")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    datasets = pytest.importorskip("datasets")

    run = tmp_path / "run"
    _record_run(run, catalog, n=2)
    res = run_eval(EvalConfig(policy="heuristic", envs=EVAL_ENVS, difficulties=[0], seeds=2, k=1,
                              out=str(tmp_path / "ev")), catalog=catalog)
    cache = str(tmp_path / "cache")
    traj = datasets.load_dataset("parquet", data_files=str(run / "trajectories.parquet"), split="train", cache_dir=cache)
    assert len(traj) == 2 and {"episode_id", "env_id", "difficulty", "seed", "actions", "messages", "r_total"} <= set(traj.column_names)
    assert json.loads(traj[0]["messages"])[0]["role"] == "system"
    eps = datasets.load_dataset("parquet", data_files=str(res.out / "episodes.parquet"), split="train", cache_dir=cache)
    assert len(eps) == 4 and "trial" in eps.column_names
    summ = datasets.load_dataset("parquet", data_files=str(res.out / "summary.parquet"), split="train", cache_dir=cache)
    assert sorted(summ["env_id"]) == ["E_CART", "E_STATUS"] and "pass_k" in summ.column_names
