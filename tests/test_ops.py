"""Operations without a Ray cluster: the Grafana dashboard names only metrics the project
exports, bad command-line arguments are one-line errors before Ray starts, where run
directories go (local path, filesystem URI, inside `ray job submit`), and `ecomrlve top`'s
histogram quantiles."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "dashboards" / "ecomrlve_grafana_dashboard.json"


# --------------------------------------------------------------------------- the dashboard


def declared_metrics() -> dict[str, str]:
    """{name: kind} of every ray.util.metrics metric the project declares: RolloutMetrics
    built against recording fakes (its names include f-strings), plus every other
    Counter/Gauge/Histogram("ecomrlve_...") call in the packages."""
    import ray.util.metrics as rum

    from ecomrlve.actors.metrics import RolloutMetrics

    found: dict[str, str] = {}

    def fake(kind):
        def make(name, *args, **kwargs):
            found[name] = kind
            return None

        return make

    saved = {k: getattr(rum, k) for k in ("Counter", "Gauge", "Histogram")}
    try:
        for k in saved:
            setattr(rum, k, fake(k.lower()))
        RolloutMetrics()
    finally:
        for k, v in saved.items():
            setattr(rum, k, v)
    for pkg in ("actors", "catalog_service", "scheduler", "policies", "envs"):
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id in ("Counter", "Gauge", "Histogram") and node.args
                        and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("ecomrlve_")):
                    found[node.args[0].value] = node.func.id.lower()
    return found


def exported_names(declared: dict[str, str]) -> set[str]:
    """Prometheus names Ray's exporter gives them (prefix ray_; counters _total; histograms
    _bucket, _sum, _count; gauges as is)."""
    out = set()
    for name, kind in declared.items():
        base = f"ray_{name}"
        out |= {"counter": {f"{base}_total"}, "gauge": {base},
                "histogram": {f"{base}_bucket", f"{base}_sum", f"{base}_count"}}[kind]
    return out


def test_every_dashboard_query_names_an_exported_metric():
    declared = declared_metrics()
    assert {"ecomrlve_episodes_finished", "ecomrlve_search_latency_ms", "ecomrlve_train_staleness",
            "ecomrlve_learner_step_seconds"} <= set(declared)
    exported = exported_names(declared)
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs.append(dash["templating"]["list"][1]["query"]["query"])
    assert len(exprs) >= 15
    used = set()
    for expr in exprs:
        names = set(re.findall(r"\bray_[a-z0-9_]+", expr))
        assert names, f"query names no metric: {expr}"
        unknown = names - exported
        assert not unknown, f"{expr} names {unknown}, not exported by the project"
        used |= names
    # the panels the dashboard promises: throughput, reward and success, window, latencies,
    # LLM/env split, learner step time and staleness
    for must in ("ray_ecomrlve_episodes_finished_total", "ray_ecomrlve_episodes_correct_total",
                 "ray_ecomrlve_episode_reward_sum", "ray_ecomrlve_difficulty_h", "ray_ecomrlve_difficulty_l",
                 "ray_ecomrlve_search_latency_ms_bucket", "ray_ecomrlve_shopper_latency_ms_bucket",
                 "ray_ecomrlve_train_outside_llm_share", "ray_ecomrlve_train_step_seconds_bucket",
                 "ray_ecomrlve_learner_step_seconds_bucket", "ray_ecomrlve_train_staleness"):
        assert must in used, must
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p.get("datasource") == "${datasource}" for p in dash["panels"] if p["type"] != "row")


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("argv, flag", [
    (["run", "--catalog", "/nonexistent/catalog"], "--catalog"),
    (["run", "--out", "nosuchfs://bucket/x"], "--out"),
    (["run", "--out", "/etc/hostname/run"], "--out"),
    (["run", "--episodes", "-3"], "--episodes"),
    (["catalog", "build", "--n", "-5", "--out", "/tmp/never-built"], "--n"),
    (["train", "--model", "nonexistent"], "--model"),
    (["train", "--catalog", "/nonexistent/catalog"], "--catalog"),
    (["eval", "--catalog", "/nonexistent/catalog"], "--catalog"),
    (["play", "--catalog", "/tmp"], "--catalog"),  # a directory, but not a catalog
    (["serve", "--catalog", "/nonexistent/catalog"], "--catalog"),
    (["sft", "/nonexistent/run", "--out", "/tmp/never-built", "--model", "nonexistent"], "--model"),
    (["top", "--interval", "0"], "--interval"),
])
def test_bad_arguments_are_one_line_errors_before_ray_starts(argv, flag, capsys):
    import ray

    from ecomrlve.actors import cli

    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("error:") and flag in err, err
    assert not ray.is_initialized()
    assert not Path("/tmp/never-built").exists()


# --------------------------------------------------------------------------- run directories


def test_check_out_accepts_paths_and_uris_and_names_out(tmp_path):
    from ecomrlve.actors.run_dir import check_out

    check_out(None)
    check_out(str(tmp_path / "new" / "deeper"))
    check_out((tmp_path / "x").as_uri())
    for bad, why in (("nosuchfs://b/x", "not a usable filesystem URI"), ("", "must be a directory path")):
        with pytest.raises(ValueError, match=f"^out: .*{why}"):
            check_out(bad)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="^out: .* is not a directory"):
        check_out(str(tmp_path / "file"))
    with pytest.raises(ValueError, match="^out: .* which is a file"):
        check_out(str(tmp_path / "file" / "run"))
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_a_uri_run_directory_is_staged_locally_and_copied_up(tmp_path):
    from ecomrlve.actors.run_dir import RunOutput

    dest = tmp_path / "bucket" / "runs" / "r1"
    out = RunOutput(dest.as_uri())
    assert out.uri == dest.as_uri() and out.local.is_dir() and not dest.exists()
    (out.local / "summary.md").write_text("# run\n")
    (out.local / "sub").mkdir()
    (out.local / "sub" / "a.json").write_text("{}")
    assert out.upload() == dest.as_uri()
    assert (dest / "summary.md").read_text() == "# run\n" and (dest / "sub" / "a.json").read_text() == "{}"
    out.cleanup()
    assert not out.local.exists()


def test_without_out_a_ray_job_writes_under_home_not_the_jobs_temporary_working_dir(tmp_path, monkeypatch):
    from ecomrlve.actors import run_dir as rd

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert not rd.in_ray_job() and rd.default_runs_root() == Path("runs")
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", '{"runtime_env": {}}')  # what Ray's job supervisor sets
    assert rd.in_ray_job()
    out = rd.RunOutput(None)
    assert out.uri is None and out.local.parent == (tmp_path / "home" / "ecomrlve_runs").resolve()
    assert re.fullmatch(r"\d{8}-\d{6}(-\d+)?", out.local.name)


# --------------------------------------------------------------------------- top


def test_histogram_quantile_matches_prometheus():
    from ecomrlve.actors.top import histogram_quantile

    buckets = [(1.0, 10.0), (2.0, 30.0), (5.0, 40.0), (float("inf"), 40.0)]
    assert histogram_quantile(0.5, buckets) == 1.5  # rank 20 halfway through (1, 2]
    assert histogram_quantile(0.25, buckets) == 1.0  # rank 10: the top of the first bucket (from 0)
    assert histogram_quantile(0.1, buckets) == 0.4  # rank 4 of 10 inside (0, 1]
    assert histogram_quantile(0.99, buckets) == pytest.approx(2.0 + 3.0 * (39.6 - 30) / 10)
    assert histogram_quantile(0.5, [(1.0, 0.0), (float("inf"), 0.0)]) is None
    assert histogram_quantile(0.99, [(1.0, 1.0), (float("inf"), 2.0)]) == 1.0  # in +Inf: the largest bound
