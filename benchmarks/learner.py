"""Benchmark: SmolLM2-135M on this machine (CPU by default): generation tokens/s at batch 1
and 8, DAPO update tokens/s, and where the time of a short in-process train run goes
(generation vs environment per turn, update, weight sync).

    python benchmarks/learner.py [--device cpu] [--new-tokens 32] [--threads N]
    python benchmarks/learner.py --ray-steps 3      # also: the Ray runner, overlapped vs --sync

Prints the figures and the ratios measured in this one run (batch-8 vs batch-1 generation
throughput; generation vs environment time per turn; update vs rollout time) and writes
them to ``benchmarks/results/learner.json``. These machines are noisy; compare ratios, not
absolute numbers across runs.

``--ray-steps N`` runs the Ray backend of `ecomrlve.actors.train.Trainer` twice (N steps with rollouts overlapping updates,
then N with ``--sync``) on the full actor system and reports where an episode's time goes
(LLM vs env vs shopper vs the rest: Ray and the event loop) and the step time of both modes.
It starts Ray: run it in a loopback-only namespace, as every Ray command here
(``unshare -n bash -c 'ip link set lo up && ...'`` with a HOME holding
``ray_bootstrap_config.yaml``; see README).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "learner.json"


def _prompt(codec, catalog):
    from ecomrlve.envs import make_env

    env = make_env("E_CART", catalog)
    obs, _ = env.reset(seed=1, options={"difficulty": 0})
    return codec.initial_prompt(obs)


def bench_generation(engine, prompt, new_tokens: int) -> dict:
    out = {}
    engine.generate([prompt], temperature=1.0, max_new_tokens=2, seed=0, stop_ids=[])  # warm-up
    for batch in (1, 8):
        t0 = time.perf_counter()
        engine.generate([prompt] * batch, temperature=1.0, max_new_tokens=1, seed=0, stop_ids=[])
        prefill = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = engine.generate([prompt] * batch, temperature=1.0, max_new_tokens=new_tokens, seed=0, stop_ids=[])
        dt = time.perf_counter() - t0
        n = sum(len(c.ids) for c in res)
        decode = max(dt - prefill, 1e-9)
        out[f"batch{batch}"] = {"tokens": n, "seconds": dt, "tokens_per_s": n / dt, "prompt_tokens": len(prompt),
                                "prefill_s": prefill, "decode_tokens_per_s": (n - batch) / decode}
    return out


def bench_update(model, tok, engine, prompt, new_tokens: int, device: str) -> dict:
    from ecomrlve.policies.dapo import DAPOConfig, Trajectory, dapo_update, make_optimizer

    res = engine.generate([prompt] * 8, temperature=1.0, max_new_tokens=new_tokens, seed=1, stop_ids=[])
    trajs = []
    for i, c in enumerate(res):
        ids = prompt + c.ids
        mask = [0] * len(prompt) + [1] * len(c.ids)
        old = [0.0] * len(prompt) + list(c.logprobs)
        trajs.append(Trajectory([(ids, mask, old)], float(i % 2), i // 4))
    cfg = DAPOConfig(micro_batch_tokens=4096)
    opt = make_optimizer(model, cfg)
    t0 = time.perf_counter()
    st = dapo_update(model, opt, trajs, cfg, tok.pad_token_id, device)
    dt = time.perf_counter() - t0
    return {"sequences": st["sequences"], "tokens": st["tokens"], "policy_tokens": st["policy_tokens"],
            "seconds": dt, "tokens_per_s": st["tokens"] / dt, "policy_tokens_per_s": st["policy_tokens"] / dt,
            "ratio_mean": st.get("ratio_mean")}


def bench_train_run(model_name: str, device: str, new_tokens: int, threads) -> dict:
    from ecomrlve.actors.train import TrainConfig, Trainer

    with tempfile.TemporaryDirectory() as tmp:
        # the untrained model writes no valid action on its own; the prefill below writes the
        # first tool call up to its last brace so episodes go on to a second turn and groups
        # have reward spread (as in tests/test_llm_cpu.py): a mechanics benchmark
        cfg = TrainConfig(collection="E_CART", model=model_name, steps=1, out=os.path.join(tmp, "run"),
                          device=device, group_size=4, tasks_per_step=1, max_new_tokens=new_tokens,
                          max_sampling_rounds=2, catalog_size=2000, checkpoint_every=1000, threads=threads,
                          prefill='{"tool_calls": [{"name": "user_get_visit_history", "args": {}}]', lenient=True,
                          tool_format="none", axes={"T_max": 2}, ray=False, warm_start="never")
        tr = Trainer(cfg, log=lambda s: None).setup()
        try:
            t0 = time.perf_counter()
            m = tr.train_step()
            wall = time.perf_counter() - t0
        finally:
            tr.close()
    turns = round(m["turns_mean"] * m["episodes"])  # episode turns (the step's metrics, per turn)
    gen = m["llm_ms_per_turn"] * turns / 1000
    env = m["env_ms_per_turn"] * turns / 1000
    return {"turns": turns, "episodes": m["episodes"], "gen_s": gen, "env_s": env,
            "gen_s_per_turn": gen / max(1, turns), "env_s_per_turn": env / max(1, turns),
            "update_s": m.get("update_s", 0.0), "sync_s": m["sync_s"], "step_wall_s": wall,
            "stepped": m.get("stepped", False), "invalid_rate": m["invalid_rate"]}


def bench_ray_train(model_name: str, device: str, new_tokens: int, steps: int, threads) -> dict:
    """Steps of the Ray runner, overlapped and then synchronous (fresh actors each)."""
    import ray

    from ecomrlve.actors.train import TrainConfig, Trainer

    out = {}
    for mode in ("overlap", "sync"):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(collection="E_CART", model=model_name, steps=steps, out=os.path.join(tmp, "run"),
                              device=device, group_size=4, tasks_per_step=2, max_new_tokens=new_tokens,
                              max_sampling_rounds=1, catalog_size=2000, checkpoint_every=1000, threads=threads,
                              prefill='{"tool_calls": [{"name": "user_get_visit_history", "args": {}}]',
                              lenient=True, tool_format="none", axes={"T_max": 2}, workers=2, shards=1,
                              sync=mode == "sync", warm_start="never")
            t0 = time.perf_counter()
            tr = Trainer(cfg, log=lambda s: None).setup()
            setup_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            ms = tr.run(on_step=lambda m: None)
            wall = time.perf_counter() - t0
        later = ms[1:] or ms  # step 1 has nothing to overlap with
        mean = lambda k, rows=later: sum(float(m[k]) for m in rows) / len(rows)  # noqa: E731
        out[mode] = {"steps": len(ms), "setup_s": setup_s, "wall_s": wall, "step_s_mean": mean("step_s"),
                     "rollout_wait_s_mean": mean("rollout_wait_s"), "update_s_mean": mean("update_s"),
                     "episodes": sum(m["episodes"] for m in ms), "llm_ms_per_turn": mean("llm_ms_per_turn", ms),
                     "env_ms_per_turn": mean("env_ms_per_turn", ms), "shopper_ms_per_turn": mean("shopper_ms_per_turn", ms),
                     "outside_llm_share": mean("outside_llm_share", ms),
                     "generation_tokens_per_s": mean("generation_tokens_per_s", ms),
                     "update_tokens_per_s": mean("update_tokens_per_s", ms),
                     "staleness_max": max(m["staleness_max"] for m in ms),
                     "stale_dropped": sum(m.get("stale_dropped", 0) for m in ms)}
        ray.shutdown()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--ray-steps", type=int, default=0,
                    help="also run N steps of the Ray runner, overlapped and --sync (needs a loopback-only namespace)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)

    import torch

    from ecomrlve.catalog_service import Catalog
    from ecomrlve.policies.codec import ChatCodec
    from ecomrlve.policies.engines import HFEngine
    from ecomrlve.policies.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, tok = load_model(args.model, device=args.device, dtype="float32")
    load_s = time.perf_counter() - t0
    catalog = Catalog.synthetic(n_products=2000, seed=0)
    codec = ChatCodec(tok, prefill='{"')
    prompt = _prompt(codec, catalog)
    engine = HFEngine(model, tok, device=args.device)
    gen = bench_generation(engine, prompt, args.new_tokens)
    upd = bench_update(model, tok, engine, prompt, args.new_tokens, args.device)
    run = bench_train_run(args.model, args.device, 8, args.threads)
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "device": args.device, "torch": torch.__version__},
        "model": args.model, "load_s": load_s, "generation": gen, "dapo_update": upd, "train_step": run,
        "ratios": {
            "gen_batch8_over_batch1": gen["batch8"]["tokens_per_s"] / gen["batch1"]["tokens_per_s"],
            "decode_batch8_over_batch1": gen["batch8"]["decode_tokens_per_s"] / gen["batch1"]["decode_tokens_per_s"],
            "gen_over_env_per_turn": run["gen_s_per_turn"] / max(run["env_s_per_turn"], 1e-9),
            "update_over_rollout": run["update_s"] / max(run["gen_s"] + run["env_s"], 1e-9),
        },
    }
    print(f"model load (cached safetensors): {load_s:.1f} s")
    for b in ("batch1", "batch8"):
        g = gen[b]
        print(f"generation {b}: {g['tokens_per_s']:.1f} tokens/s with the prompt, {g['decode_tokens_per_s']:.1f} "
              f"tokens/s decoding ({g['tokens']} tokens in {g['seconds']:.1f} s, prompt {g['prompt_tokens']} tokens, "
              f"prefill {g['prefill_s']:.1f} s)")
    print(f"DAPO update: {upd['tokens_per_s']:.1f} tokens/s ({upd['tokens']} tokens, {upd['policy_tokens']} policy "
          f"tokens, {upd['sequences']} sequences in {upd['seconds']:.1f} s)")
    print(f"train step (E_CART, 1 task x G=4, T_max 2, 8-token replies): {run['turns']} turns, generation {run['gen_s_per_turn']:.2f} "
          f"s/turn vs env {run['env_s_per_turn'] * 1e3:.1f} ms/turn; update {run['update_s']:.1f} s, "
          f"sync {run['sync_s']:.1f} s, step {run['step_wall_s']:.1f} s")
    if args.ray_steps:
        rr = bench_ray_train(args.model, args.device, 8, args.ray_steps, args.threads)
        result["ray_train"] = rr
        result["ratios"]["sync_over_overlap_step_time"] = rr["sync"]["step_s_mean"] / rr["overlap"]["step_s_mean"]
        for mode, x in rr.items():
            print(f"ray train ({mode}, E_CART 2 tasks x G=4, T_max 2, 8-token replies, {x['steps']} steps): "
                  f"{x['step_s_mean']:.1f} s/step after the first (waiting {x['rollout_wait_s_mean']:.1f} s on "
                  f"rollouts, update {x['update_s_mean']:.1f} s); per turn LLM {x['llm_ms_per_turn']:.0f} ms, env "
                  f"{x['env_ms_per_turn']:.1f} ms, shopper {x['shopper_ms_per_turn']:.1f} ms; outside the LLM "
                  f"{x['outside_llm_share']:.1%} of episode time; generation {x['generation_tokens_per_s']:.1f} tok/s, "
                  f"update {x['update_tokens_per_s']:.0f} tok/s; max staleness {x['staleness_max']}, "
                  f"stale dropped {x['stale_dropped']}")
    r = result["ratios"]
    print(f"ratios: batch-8 / batch-1 generation throughput {r['gen_batch8_over_batch1']:.1f}x (decoding only "
          f"{r['decode_batch8_over_batch1']:.1f}x); generation / env "
          f"time per turn {r['gen_over_env_per_turn']:.0f}x; update / rollout time {r['update_over_rollout']:.2f}x"
          + (f"; ray step time sync / overlapped {r['sync_over_overlap_step_time']:.2f}x"
             if "sync_over_overlap_step_time" in r else ""))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
