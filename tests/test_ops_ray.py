"""Operations on a local Ray session: `ecomrlve run` with `--out` a filesystem URI (the run
directory arrives there, the table is printed once, where the dashboard and the metrics
endpoints are is printed) and `ecomrlve top --once` showing a running run's figures.

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

    from actors.cli import init_ray

    # no dashboard here (it costs seconds to start): tests/test_ops_cluster.py checks the URL a
    # job prints against a head that runs one
    init_ray(num_cpus=2, metrics_export_port=_free_port(), include_dashboard=False,
             _system_config={"metrics_report_interval_ms": 1000})
    yield
    ray.shutdown()


SMALL = ["--collection", "C2", "--policy", "oracle", "--workers", "1", "--shards", "1", "--catalog-size", "2000",
         "--shopper", "local", "--no-live"]


def test_run_to_a_uri_prints_one_table_the_dashboard_and_copies_the_run_directory(ray_session, tmp_path, capsys):
    from actors import cli

    dest = tmp_path / "shared" / "run1"
    assert cli.main(["run", *SMALL, "--episodes", "12", "--out", dest.as_uri()]) == 0
    captured = capsys.readouterr()
    err = captured.err
    assert captured.out.strip() == dest.as_uri()  # stdout: where the run directory is
    assert len(re.findall(r"ecomrlve run: \d+/\d+ episodes", err)) == 1  # the final table, once
    assert "ecomrlve run: 12/12 episodes" in err
    assert "dashboard: not running on this cluster" in err
    assert re.search(r"metrics: ray_ecomrlve_\* on http://[\d.]+:\d+/metrics", err)
    assert f"copied to {dest.as_uri()}" in err
    names = {p.name for p in dest.iterdir()}
    assert {"trajectories.parquet", "curriculum.json", "summary.md", "config.json", "run.json", "difficulty.png",
            "success.png"} <= names
    import pyarrow.parquet as pq

    assert sorted(pq.read_table(dest / "trajectories.parquet").column("episode_id").to_pylist()) == list(range(12))
    run = json.loads((dest / "run.json").read_text())
    assert run["written"] == 12
    # the final table's figures are the run's: 12 episodes over its two envs, oracle solves all
    rows = re.findall(r"(E_\w+)\s+│\s+(\d+)\s+│\s+(\d+)%", err)
    assert sorted(rows) and sum(int(n) for _, n, _ in rows) == 12 and {p for *_, p in rows} == {"100"}
    staging = re.findall(r"run directory: (/\S*ecomrlve-run-\S+)", err)
    assert staging and not any(Path(p).exists() for p in staging)  # the local staging copy is gone


def test_top_once_shows_the_running_runs_figures(ray_session, capsys):
    from actors import cli
    from actors.driver import Driver, RunConfig
    from actors.top import scrape_latencies

    driver = Driver(RunConfig(collection="C2", episodes=12, workers=1, shards=1, policy="oracle", catalog_size=2000,
                              shopper="local"))
    try:
        result = driver.run()  # the actor system stays up until shutdown: the run is still "running"
        deadline = time.time() + 30  # the node's metrics agent exports about once a second
        while "search" not in scrape_latencies() and time.time() < deadline:
            time.sleep(1)
        capsys.readouterr()
        assert cli.main(["top", "--once", "--interval", "0.2", "--run", driver.run_dir.name]) == 0
        out = capsys.readouterr().out
    finally:
        driver.shutdown()
    levels = result.curriculum["levels"]
    assert f"run {driver.run_dir.name}" in out
    for env_id, v in levels.items():
        row = re.search(rf"{env_id}\s+│\s+(\d+)\s+│\s+(\d+)%\s+│\s+\[(\d+), (\d+)\]\s+│\s+([\d.]+)", out)
        assert row, out
        assert int(row.group(1)) == v["episodes"] and int(row.group(2)) == round(100 * v["successes"] / v["episodes"])
        assert (int(row.group(3)), int(row.group(4))) == (v["l"], v["h"])
        assert float(row.group(5)) == 0.0  # the run is idle: no episodes between the two readings
    assert sum(v["episodes"] for v in levels.values()) == 12
    assert re.search(r"search latency: p50 [\d.]+ ms, p99 [\d.]+ ms over [\d,]+ requests", out), out
