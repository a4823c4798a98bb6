"""Operations on a local Ray session: `ecomrlve run` with `--out` a filesystem URI (the run
directory arrives there, the table is printed once, where the dashboard and the metrics
endpoints are is printed), watched while it runs by `ecomrlve top --once`.

Runs in a loopback-only network namespace like every Ray test (the `ray_env` fixture)."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_session(ray_env):
    import ray

    from ecomrlve.actors.ray_session import init_ray

    # no dashboard here (it costs seconds to start): tests/test_ops_cluster.py checks the URL a
    # job prints against a head that runs one
    init_ray(num_cpus=2, metrics_export_port=_free_port(), include_dashboard=False,
             _system_config={"metrics_report_interval_ms": 1000})
    yield
    ray.shutdown()


SMALL = ["--collection", "C2", "--policy", "oracle", "--workers", "1", "--shards", "1", "--catalog-size", "2000",
         "--shopper", "local", "--no-live"]


def test_run_to_a_uri_with_top_watching_it(ray_session, tmp_path, capsys):
    """`ecomrlve run --out file://...` in a thread while `ecomrlve top --once` reads it live;
    then the run's output (one table, where to look) and the run directory at the URI."""
    import threading

    from ecomrlve.actors import cli
    from ecomrlve.actors.top import list_runs, scrape_latencies

    dest = tmp_path / "shared" / "run1"
    episodes = 3000  # long enough that top reads it while it runs, on a fast machine too
    codes = []
    runner = threading.Thread(target=lambda: codes.append(
        cli.main(["run", *SMALL, "--episodes", str(episodes), "--out", dest.as_uri()])))
    runner.start()
    try:
        import ray

        deadline = time.time() + 120
        while time.time() < deadline:  # the run is up and has searched (exported latency)
            runs = list_runs() if ray.is_initialized() else []
            if runs and "search" in scrape_latencies():
                break
            time.sleep(0.5)
        assert cli.main(["top", "--once", "--interval", "0.5"]) == 0
    finally:
        runner.join(timeout=300)
    assert codes == [0]
    captured = capsys.readouterr()
    out, err = captured.out, captured.err

    # top: the running run, per env: episodes, success, window, episodes/s; latencies
    rows = re.findall(r"(E_\w+)\s+│\s+(\d+)\s+│\s+(\d+)%\s+│\s+\[(\d+), (\d+)\]\s+│\s+([\d.]+)", out)
    assert {r[0] for r in rows} == {"E_CART", "E_SUB"}, out  # C2
    assert 0 < sum(int(r[1]) for r in rows) < episodes  # read while running
    assert {r[2] for r in rows if int(r[1])} == {"100"}  # the oracle solves every episode
    assert all(int(lo) <= int(hi) for *_, lo, hi, _ in rows)
    total = re.search(r"all\s+│\s+(\d+)\s+│\s+\d+%\s+│\s+│\s+([\d.]+)", out)
    assert total and float(total.group(2)) > 0  # episodes/s between the two readings
    assert re.search(r"search latency: p50 [\d.]+ ms, p99 [\d.]+ ms over [\d,]+ requests", out), out

    # the run: stdout ends with where its directory is; the final table is printed once
    assert out.strip().splitlines()[-1] == dest.as_uri()
    assert len(re.findall(r"ecomrlve run: \d+/\d+ episodes", err)) == 1
    assert f"ecomrlve run: {episodes}/{episodes} episodes" in err
    assert "dashboard: not running on this cluster" in err  # this session has no dashboard
    assert re.search(r"metrics: ray_ecomrlve_\* on http://[\d.]+:\d+/metrics", err)
    assert re.search(r"live view: ecomrlve top --address [\d.]+:\d+", err)
    assert f"copied to {dest.as_uri()}" in err
    final = re.findall(r"(E_\w+)\s+│\s+(\d+)\s+│\s+(\d+)%", err)
    assert sum(int(n) for _, n, _ in final) == episodes and {p for *_, p in final} == {"100"}

    # the run directory arrived at the URI; the local staging copy is gone
    names = {p.name for p in dest.iterdir()}
    assert {"trajectories.parquet", "curriculum.json", "summary.md", "config.json", "run.json", "difficulty.png",
            "success.png"} <= names
    import pyarrow.parquet as pq

    ids = pq.read_table(dest / "trajectories.parquet").column("episode_id").to_pylist()
    assert sorted(ids) == list(range(episodes))
    assert json.loads((dest / "run.json").read_text())["written"] == episodes
    staging = re.findall(r"run directory: (/\S*ecomrlve-run-\S+)", err)
    assert staging and not any(Path(p).exists() for p in staging)
