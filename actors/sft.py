"""``ecomrlve sft``: supervised fine-tuning on oracle episodes (agent tokens only), the warm
start of `ecomrlve.actors.warm_start` and of docs/training.md. The saved model records the
chat settings it was trained with (``OUT/model/chat.json``)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, field_validator

from .config import arg, require_extra
from .run_dir import trajectory_files, write_json_atomic

__all__ = ["SftConfig", "cmd_sft", "run_sft", "sft_examples", "read_episodes", "check_model", "ToolFormat"]


def check_model(model: str) -> None:
    """ValueError naming ``model`` when `model` does not resolve (ecomrlve.policies.models)."""
    from ecomrlve.policies.models import ModelNotFound, locate_model

    try:
        locate_model(model)
    except ModelNotFound as exc:
        raise ValueError(f"model: {exc}") from None


ToolFormat = Literal["auto", "native", "compact", "json", "none"]


def read_episodes(run_dir) -> list[dict]:
    """Episodes of an ``ecomrlve run`` directory (or a parquet file): rows with at least
    ``messages`` and ``actions`` (JSON strings or lists) and ``env_id``."""
    import pyarrow.parquet as pq

    p = Path(run_dir)
    if p.is_file():
        files = [p]
    else:
        files = trajectory_files(p) or sorted(p.glob("*.parquet"))
    if not files:
        raise ValueError(f"{run_dir}: no trajectories parquet found")
    rows = []
    for f in files:
        rows += pq.read_table(f).to_pylist()
    for i, r in enumerate(rows):
        for col in ("messages", "actions", "env_id"):
            if col not in r:
                raise ValueError(f"{files[0]}: column {col!r} missing (row {i})")
    return rows


def sft_examples(rows: Sequence[dict], codec, only_correct: bool = True) -> tuple[list[tuple[list[int], list[int]]], dict]:
    """(ids, loss mask) per episode: every agent turn is the canonical action text after the
    codec's prefill, plus the stop token; only those tokens are in the mask."""
    from ecomrlve.envs import env_class
    from ecomrlve.envs.tools import tool_schemas
    from ecomrlve.policies.codec import EpisodeTokens, TurnTokens, action_to_text

    eos = codec.stop_ids[0]
    out, skipped = [], {"not_correct": 0, "prefill_mismatch": 0, "bad_row": 0}
    schemas: dict[str, list] = {}
    for r in rows:
        if only_correct and not r.get("is_correct", True):
            skipped["not_correct"] += 1
            continue
        try:
            messages = json.loads(r["messages"]) if isinstance(r["messages"], str) else list(r["messages"])
            actions = json.loads(r["actions"]) if isinstance(r["actions"], str) else list(r["actions"])
            if r["env_id"] not in schemas:
                schemas[r["env_id"]] = tool_schemas(env_class(r["env_id"]).tools)
        except (ValueError, TypeError, KeyError):
            skipped["bad_row"] += 1
            continue
        tools = schemas[r["env_id"]]
        at = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
        if len(at) < len(actions):
            skipped["bad_row"] += 1
            continue
        ep = EpisodeTokens()
        ok = True
        for k, action in enumerate(actions):
            text = action_to_text(action)
            if not text.startswith(codec.prefill):
                ok = False
                break
            prompt, _ = codec.next_prompt(ep, {"messages": messages[:at[k]], "tools": tools})
            comp = codec.encode(text[len(codec.prefill):]) + [eos]
            ep.turns.append(TurnTokens(prompt, comp, [0.0] * len(comp), "stop", n_messages=at[k]))
        if not ok or not ep.turns:
            skipped["prefill_mismatch"] += 1
            continue
        for ids, mask, _ in ep.segments():
            out.append((ids, mask))
    return out, skipped


def run_sft(run_dir, model: str = "smollm2", steps: int = 100, out: str | None = None, batch_size: int = 4,
            lr: float = 5e-5, device: str = "cpu", prefill: str | None = None, tool_format: str | None = None,
            only_correct: bool = True, seed: int = 0, max_tokens: int = 8192, log: Callable[[str], None] = print,
            model_obj=None, tokenizer=None) -> dict:
    """Supervised warm start on oracle episodes; only agent tokens are in the loss. `prefill`
    and `tool_format` default to `model`'s recorded chat settings (else the project default);
    the saved model records them (``OUT/model/chat.json``)."""
    import random

    import torch

    from ecomrlve.policies.chat_settings import ChatSettings
    from ecomrlve.policies.dapo import _micro_batches, make_batch, sft_loss
    from ecomrlve.policies.models import load_model, save_model

    if model_obj is None:
        model_obj, tokenizer = load_model(model, device=device, dtype="float32")
    chat = ChatSettings.for_model(model, prefill, tool_format)
    codec = chat.codec(tokenizer)
    rows = read_episodes(run_dir)
    examples, skipped = sft_examples(rows, codec, only_correct)
    if not examples:
        raise ValueError(f"no usable episodes in {run_dir} (skipped: {skipped})")
    log(f"sft: {len(examples)} sequences from {len(rows)} episodes (skipped {skipped}); "
        f"{sum(sum(m) for _, m in examples)} agent tokens of {sum(len(i) for i, _ in examples)}")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW([p for p in model_obj.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order: list[int] = []
    losses = []
    t0 = time.perf_counter()
    tokens = 0
    model_obj.train()
    for step in range(1, steps + 1):
        batch = []
        for _ in range(min(batch_size, len(examples))):
            if not order:
                order = list(range(len(examples)))
                rng.shuffle(order)
            batch.append(examples[order.pop()])
        n_mask = sum(sum(m) for _, m in batch)
        opt.zero_grad(set_to_none=True)
        total = 0.0
        rows_b = [(i, m, [0.0] * len(i), 0.0) for i, m in batch]
        for mb in _micro_batches(rows_b, max_tokens):
            ids, attn, mask, _, _ = make_batch(mb, pad, device)
            loss, n = sft_loss(model_obj, ids, attn, mask)
            (loss * (n / n_mask)).backward()
            total += float(loss.detach()) * n / n_mask
            tokens += int(attn.sum())
        torch.nn.utils.clip_grad_norm_(model_obj.parameters(), 1.0)
        opt.step()
        losses.append(total)
        if step == 1 or step % 10 == 0 or step == steps:
            log(f"sft step {step}/{steps}: loss {total:.4f} ({tokens / (time.perf_counter() - t0):.0f} tokens/s)")
    model_obj.eval()
    result = {"steps": steps, "sequences": len(examples), "loss_first": losses[0], "loss_last": losses[-1],
              "tokens_per_s": tokens / (time.perf_counter() - t0), "skipped": skipped}
    if out:
        d = save_model(model_obj, tokenizer, Path(out) / "model", chat=chat)
        write_json_atomic(Path(out) / "sft.json", {**result, "run_dir": str(run_dir), "model": model, "lr": lr,
                                               "batch_size": batch_size, "prefill": chat.prefill})
        result["model_dir"] = str(d)
        log(f"sft: model saved to {d} (use --model {d})")
    return result


# --------------------------------------------------------------------------- CLI


class SftConfig(BaseModel):
    """``ecomrlve sft``: supervised warm start on the correct episodes of an oracle run."""

    model_config = ConfigDict(extra="forbid")

    run_dir: str = arg(description="run directory (or parquet file) with messages/actions columns", positional=True)
    model: str = arg("smollm2", "smollm2, a local model directory, or a cached HF id")
    steps: int = arg(100, "optimizer steps", ge=1)
    out: str = arg(description="output directory (the model goes to OUT/model)")
    batch_size: int = arg(4, "episodes per step", ge=1)
    lr: float = arg(5e-5, "AdamW learning rate", gt=0)
    device: str = arg("cpu", "cpu or cuda")
    prefill: str | None = arg(None, "assistant prefill (default: the model directory's chat.json, else '{\"'); "
                                    "recorded in OUT/model/chat.json for train / eval / serve")
    tool_format: ToolFormat | None = arg(None, "how tools are shown (default: the model directory's chat.json, "
                                                 "else auto)")
    all_episodes: bool = arg(False, "also train on episodes that were not correct")
    seed: int = arg(0, "shuffling seed")

    @field_validator("model")
    @classmethod
    def _model_resolves(cls, v: str) -> str:
        check_model(v)
        return v


def cmd_sft(cfg: SftConfig) -> int:
    require_extra(("torch", "transformers"), "llm", "`ecomrlve sft`")
    try:
        run_sft(cfg.run_dir, cfg.model, cfg.steps, cfg.out, cfg.batch_size, cfg.lr, cfg.device, cfg.prefill,
                cfg.tool_format, not cfg.all_episodes, cfg.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


