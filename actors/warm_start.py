"""Warm start of ``ecomrlve train``: supervised fine-tuning on oracle episodes when the model
cannot write valid actions, so that DAPO has reward spread to learn from.

    model_src = warm_start(cfg, run_dir, log, make_catalog)   # cfg.model, or run_dir/warm_start/model

An untrained instruct model (SmolLM2-135M) writes no valid JSON action: every episode ends
``invalid`` at turn 1 with reward -1, every group has equal rewards, dynamic sampling drops
them all and no update ever happens. So before the first step, with ``cfg.warm_start``:

- ``never``: nothing; train starts from ``cfg.model``.
- ``auto`` (default): play ``cfg.warm_start_episodes`` oracle episodes of the collection
  (difficulties 0..2, seeds from `SEED_BASE`, so never a training or evaluation seed), take
  the first `PROBE_TURNS_PER_EPISODE` agent turns of the first `PROBE_EPISODES` episodes,
  and let the model answer each greedily (within ``min(cfg.max_new_tokens,
  PROBE_MAX_NEW_TOKENS)`` tokens); a reply is valid when the codec parses it into an
  action that `ecomrlve.envs.actions.parse_action` accepts. Below `VALID_THRESHOLD` of the
  probe turns valid, run the SFT below; otherwise train from ``cfg.model``.
- ``always``: the SFT without asking.

The SFT (``ecomrlve.actors.sft.run_sft``: agent tokens only, the run's chat settings)
runs ``cfg.warm_start_steps`` steps of `BATCH_SIZE` episodes at `LR` on the correct oracle
episodes; the model goes to ``run_dir/warm_start/model`` (with its ``chat.json``), the
episodes to ``run_dir/warm_start/oracle.parquet``, the figures (valid probe turns before and
after, loss, seconds) to ``run_dir/warm_start/warm_start.json`` and the log. A resumed run
never warm-starts (its checkpoint is the model).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["warm_start", "oracle_episodes", "probe_observations", "count_valid_actions", "WARM_START_MODES",
           "VALID_THRESHOLD"]

WARM_START_MODES = ("auto", "always", "never")
VALID_THRESHOLD = 0.5  # warm-start when fewer than this share of the probe turns are valid actions
PROBE_EPISODES = 4
PROBE_TURNS_PER_EPISODE = 2
PROBE_MAX_NEW_TOKENS = 128
SEED_BASE = 900_000_000  # oracle seeds: above the training seeds, below nothing else in use
DIFFICULTIES = (0, 1, 2)
BATCH_SIZE = 2
LR = 1e-4  # measured on SmolLM2-135M: 40 steps x 2 episodes take the valid-action rate from 0 to ~90%


def oracle_episodes(env_ids: Sequence[str], catalog, n: int, seed: int = 0) -> list[dict]:
    """`n` oracle episodes, round-robin over `env_ids` and `DIFFICULTIES`, as rows of the
    trajectory schema's columns that SFT reads (env_id, difficulty, seed, messages, actions
    as JSON, is_correct, r_total, termination_reason)."""
    from ecomrlve.policies import OraclePolicy

    from .rollout import Episode, play

    episodes = []
    for i in range(n):
        env_id = env_ids[i % len(env_ids)]
        d = DIFFICULTIES[(i // len(env_ids)) % len(DIFFICULTIES)]
        task = {"episode_id": i, "env_id": env_id, "difficulty": d, "seed": SEED_BASE + seed * 100_000 + i}
        episodes.append(Episode(task, catalog=catalog))
    play(episodes, lambda e: OraclePolicy(e.env))
    return [e.record("oracle", "warm_start") for e in episodes]


def probe_observations(rows: Sequence[dict], episodes: int = PROBE_EPISODES,
                       turns: int = PROBE_TURNS_PER_EPISODE) -> list[dict]:
    """The observations (messages so far + tool schemas) before the first `turns` agent
    turns of the first `episodes` rows."""
    from ecomrlve.envs import env_class
    from ecomrlve.envs.tools import tool_schemas

    out = []
    for r in rows[:episodes]:
        messages = json.loads(r["messages"])
        tools = tool_schemas(env_class(r["env_id"]).tools)
        at = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
        out += [{"messages": messages[:k], "tools": tools} for k in at[:turns]]
    return out


def count_valid_actions(engine, codec, observations: Sequence[dict],
                        max_new_tokens: int = PROBE_MAX_NEW_TOKENS) -> int:
    """How many of `observations` the model answers (greedily, one batched generate) with a
    reply the codec parses into a valid action."""
    from ecomrlve.envs.actions import InvalidAction, parse_action

    if not observations:
        return 0
    prompts = [codec.initial_prompt(o) for o in observations]
    outs = engine.generate(prompts, temperature=0.0, max_new_tokens=max_new_tokens, seed=0, stop_ids=codec.stop_ids)
    valid = 0
    for c in outs:
        try:
            parse_action(codec.parse(codec.reply_text(c.ids)))
            valid += 1
        except InvalidAction:
            pass
    return valid


def warm_start(cfg, run_dir, log: Callable[[str], None], make_catalog: Callable[[], object]) -> str:
    """The model `cfg` trains from (see the module docstring): ``cfg.model``, or the directory
    of the warm-started model. `cfg` is a validated `ecomrlve.actors.train.TrainConfig`;
    `make_catalog()` gives the catalog of the oracle episodes (built only when probing)."""
    if cfg.warm_start == "never" or cfg.resume:
        return cfg.model
    from ecomrlve.envs import resolve_envs
    from ecomrlve.policies.engines import HFEngine
    from ecomrlve.policies.models import load_model

    from .run_dir import write_json_atomic
    from .sft import run_sft

    t0 = time.perf_counter()
    chat = cfg.chat_settings()
    model, tok = load_model(cfg.model, device=cfg.device, dtype="float32")
    codec = chat.codec(tok)
    engine = HFEngine(model, tok, device=cfg.device)
    rows = oracle_episodes(resolve_envs(cfg.collection), make_catalog(), cfg.warm_start_episodes,
                           cfg.seed)
    probe = probe_observations(rows)
    budget = min(cfg.max_new_tokens, PROBE_MAX_NEW_TOKENS)
    before = count_valid_actions(engine, codec, probe, budget)
    share = before / len(probe) if probe else 0.0
    if cfg.warm_start == "auto" and share >= VALID_THRESHOLD:
        log(f"warm start: not needed, {before}/{len(probe)} greedy probe turns are valid actions "
            f"(threshold {VALID_THRESHOLD:.0%}); training {cfg.model} as is")
        return cfg.model
    why = "asked for" if cfg.warm_start == "always" else (
        f"{before}/{len(probe)} greedy probe turns are valid actions, below {VALID_THRESHOLD:.0%}")
    log(f"warm start: {why}; SFT on {len(rows)} oracle episodes for {cfg.warm_start_steps} steps "
        f"(--warm-start never turns this off)")
    out = Path(run_dir) / "warm_start"
    out.mkdir(parents=True, exist_ok=True)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), out / "oracle.parquet")
    sft = run_sft(out / "oracle.parquet", cfg.model, cfg.warm_start_steps, None, BATCH_SIZE, LR, cfg.device,
                  chat.prefill, chat.tool_format, True, cfg.seed, log=log, model_obj=model, tokenizer=tok)
    from ecomrlve.policies.models import save_model

    model_dir = save_model(model, tok, out / "model", chat=chat)
    after = count_valid_actions(engine, codec, probe, budget)
    figures = {"valid_before": before, "valid_after": after, "probe_turns": len(probe), "episodes": len(rows),
               "correct_episodes": sum(r["is_correct"] for r in rows), "steps": cfg.warm_start_steps,
               "batch_size": BATCH_SIZE, "lr": LR, "loss_first": sft["loss_first"], "loss_last": sft["loss_last"],
               "seconds": time.perf_counter() - t0, "model_dir": str(model_dir), "base_model": cfg.model}
    write_json_atomic(out / "warm_start.json", figures)
    log(f"warm start: valid probe turns {before}/{len(probe)} -> {after}/{len(probe)}, loss "
        f"{sft['loss_first']:.3f} -> {sft['loss_last']:.3f}, {figures['seconds']:.0f} s; training from {model_dir}")
    return str(model_dir)
