"""DAPO on multi-turn token trajectories, CleanRL-style: everything on one screen.

DAPO (Yu et al., 2025) = GRPO's group-relative advantages, plus
  * clip-higher: ratio clipped to [1 - eps_low, 1 + eps_high] (0.2 / 0.28);
  * token-level loss: the clipped surrogate is averaged over ALL policy tokens of the batch
    (not per sequence first), so long answers are not down-weighted;
  * dynamic sampling: groups whose G rewards are all equal carry no signal and are dropped;
  * soft overlong punishment: a reply longer than max_new_tokens - buffer loses up to
    ``overlong_factor`` linearly; a reply cut by the length limit gets -overlong_factor;
  * no KL term (DAPO drops it: there is no reference model).

One *trajectory* is one episode: its token sequence(s) from `EpisodeTokens.segments()`,
a loss mask over the policy's own sampled tokens, the logprobs recorded at sampling, the
episode reward, and a group key (rollouts of the same task share it). Every policy token
of the episode gets the episode's advantage.

Advantage: A_i = (r_i - mean(r_group)) / (std(r_group) + eps), std unbiased (ddof=1, as
``torch.std``) by default; ``std="none"`` gives Dr.GRPO-style mean-centring only.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Hashable, Iterable, Sequence

__all__ = ["DAPOConfig", "Trajectory", "group_advantages", "filter_groups", "informative_groups", "overlong_penalty", "dapo_loss",
           "token_logprobs", "make_batch", "dapo_update", "make_optimizer", "maybe_lora", "sft_loss"]


@dataclass
class DAPOConfig:
    group_size: int = 8
    eps_low: float = 0.2
    eps_high: float = 0.28
    lr: float = 1e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float = 1.0
    temperature: float = 1.0  # must match the sampling temperature (logprobs of softmax(logits/T))
    std: str = "unbiased"  # unbiased | biased | none
    adv_eps: float = 1e-6
    overlong_buffer: int = 0  # 0: off; else the soft-penalty window (tokens) before max_new_tokens
    overlong_factor: float = 1.0
    micro_batch_tokens: int = 4096  # sequences per forward pass are packed up to this many tokens
    epochs: int = 1  # passes over the batch per update (1: ratio == 1 at the first token-step)
    lora_r: int = 0  # >0: train LoRA adapters (needs peft)
    lora_alpha: int = 32
    autocast: str = ""  # "bfloat16" / "float16": forward and backward under torch.autocast (weights stay as they are)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Trajectory:
    """Learner input: one episode, ready to batch."""

    segments: list[tuple[list[int], list[int], list[float]]]  # (ids, mask, old logprobs) per segment
    reward: float
    group: Hashable
    version: int = 0  # oldest weight version that sampled any of its tokens
    completion_lengths: list[int] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)  # per turn: hit max_new_tokens
    info: dict = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return sum(sum(m) for _, m, _ in self.segments)


# --------------------------------------------------------------------------- rewards


def overlong_penalty(length: int, max_new_tokens: int, buffer: int, factor: float = 1.0,
                     truncated: bool = False) -> float:
    """DAPO's soft overlong punishment for one reply of `length` tokens."""
    if buffer <= 0:
        return 0.0
    if truncated or length > max_new_tokens:
        return -factor
    start = max_new_tokens - buffer
    if length <= start:
        return 0.0
    return -factor * (length - start) / buffer


def group_advantages(rewards: Sequence[float], groups: Sequence[Hashable], std: str = "unbiased",
                     eps: float = 1e-6) -> list[float]:
    """(r - group mean) / (group std + eps); 0 for a group of one and wherever r equals the
    mean (so a uniform group gives exactly 0 even with eps = 0)."""
    by: dict[Hashable, list[float]] = defaultdict(list)
    for r, g in zip(rewards, groups):
        by[g].append(float(r))
    stats = {}
    for g, rs in by.items():
        n = len(rs)
        mean = sum(rs) / n
        if std == "none":
            scale = 1.0
        else:
            ddof = 1 if std == "unbiased" else 0
            var = sum((r - mean) ** 2 for r in rs) / (n - ddof) if n - ddof > 0 else 0.0
            scale = math.sqrt(var) + eps
        stats[g] = (mean, scale, n)
    out = []
    for r, g in zip(rewards, groups):
        mean, scale, n = stats[g]
        diff = float(r) - mean
        out.append(0.0 if n < 2 or diff == 0.0 else diff / scale)
    return out


def informative_groups(samples: Iterable[tuple[Hashable, float]]) -> set:
    """The dynamic-sampling rule, on ``(group, reward)`` pairs: the groups with at least two
    members whose rewards are not all equal (the only ones with a non-zero advantage). A
    trainer counts them on episode summaries before the trajectories reach the learner."""
    by: dict[Hashable, set[float]] = defaultdict(set)
    size: dict[Hashable, int] = defaultdict(int)
    for g, r in samples:
        by[g].add(float(r))
        size[g] += 1
    return {g for g, rs in by.items() if size[g] >= 2 and len(rs) > 1}


def filter_groups(trajectories: Sequence[Trajectory]) -> tuple[list[Trajectory], int]:
    """Dynamic sampling: drop every group that is not `informative_groups` (all rewards
    equal, or one member). Returns (kept trajectories, number of groups dropped)."""
    keep = informative_groups((t.group, t.reward) for t in trajectories)
    kept = [t for t in trajectories if t.group in keep]
    return kept, len({t.group for t in trajectories}) - len(keep)


# --------------------------------------------------------------------------- loss


def dapo_loss(logp, old_logp, advantages, mask, eps_low: float = 0.2, eps_high: float = 0.28,
              num_tokens: float | None = None):
    """Token-level clipped surrogate. All tensors are [B, T]; `advantages` may be [B] or
    [B, T]. Divides by `num_tokens` (the whole batch's policy-token count, so micro-batches
    add up to the full-batch mean) or by ``mask.sum()``. Returns (loss, stats)."""
    import torch

    mask = mask.to(logp.dtype)
    adv = advantages if advantages.dim() == 2 else advantages[:, None].expand_as(logp)
    ratio = torch.exp(logp - old_logp)
    surr1 = ratio * adv
    surr2 = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    per_token = -torch.min(surr1, surr2)
    denom = float(num_tokens) if num_tokens is not None else mask.sum().clamp(min=1.0)
    loss = (per_token * mask).sum() / denom
    with torch.no_grad():
        n = mask.sum().clamp(min=1.0)
        low = ((ratio < 1.0 - eps_low) & (adv < 0)).to(logp.dtype)
        high = ((ratio > 1.0 + eps_high) & (adv > 0)).to(logp.dtype)
        stats = {
            "clip_low_frac": float((low * mask).sum() / n),
            "clip_high_frac": float((high * mask).sum() / n),
            "approx_kl": float((((ratio - 1) - (logp - old_logp)) * mask).sum() / n),
            "ratio_mean": float((ratio * mask).sum() / n),
        }
    return loss, stats


def token_logprobs(model, ids, attention_mask, temperature: float = 1.0, mask=None):
    """log pi(ids[t] | ids[<t]) as a [B, T] tensor aligned with `ids` (position 0 gets 0).
    With `mask`, the vocabulary projection runs only at the positions some row needs
    (``logits_to_keep``); the other positions get 0."""
    import torch

    B, T = ids.shape
    keep = None
    if mask is not None:
        need = mask[:, 1:].bool().any(0)  # position j predicts token j + 1
        keep = torch.nonzero(need).flatten()
    if keep is not None and len(keep) < T - 1:
        try:
            logits = model(input_ids=ids, attention_mask=attention_mask, logits_to_keep=keep).logits
        except TypeError:
            keep = None
    if keep is None or len(keep) >= T - 1:
        keep = torch.arange(T - 1, device=ids.device)
        logits = model(input_ids=ids, attention_mask=attention_mask).logits[:, :-1, :]
    logits = logits.float()
    if temperature and temperature != 1.0:
        logits = logits / temperature
    targets = ids[:, keep + 1]
    lp = torch.log_softmax(logits, dim=-1).gather(-1, targets[:, :, None]).squeeze(-1)
    out = torch.zeros((B, T), dtype=lp.dtype, device=lp.device)
    out[:, keep + 1] = lp
    return out


# --------------------------------------------------------------------------- batching


def make_batch(rows: Sequence[tuple[list[int], list[int], list[float], float]], pad_id: int, device="cpu"):
    """Right-padded tensors (ids, attention, mask, old logprobs, advantages) from rows of
    (ids, mask, old logprobs, advantage)."""
    import torch

    n = max(len(r[0]) for r in rows)
    B = len(rows)
    ids = torch.full((B, n), pad_id, dtype=torch.long)
    attn = torch.zeros((B, n), dtype=torch.long)
    mask = torch.zeros((B, n), dtype=torch.float32)
    old = torch.zeros((B, n), dtype=torch.float32)
    adv = torch.zeros((B,), dtype=torch.float32)
    for i, (t_ids, t_mask, t_old, a) in enumerate(rows):
        L = len(t_ids)
        ids[i, :L] = torch.tensor(t_ids, dtype=torch.long)
        attn[i, :L] = 1
        mask[i, :L] = torch.tensor(t_mask, dtype=torch.float32)
        old[i, :L] = torch.tensor(t_old, dtype=torch.float32)
        adv[i] = a
    return ids.to(device), attn.to(device), mask.to(device), old.to(device), adv.to(device)


def _micro_batches(rows, max_tokens: int):
    rows = sorted(rows, key=lambda r: len(r[0]))
    cur, longest = [], 0
    for r in rows:
        longest2 = max(longest, len(r[0]))
        if cur and longest2 * (len(cur) + 1) > max_tokens:
            yield cur
            cur, longest2 = [], len(r[0])
        cur.append(r)
        longest = longest2
    if cur:
        yield cur


# --------------------------------------------------------------------------- the update


def make_optimizer(model, cfg: DAPOConfig):
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.betas))


def maybe_lora(model, cfg: DAPOConfig):
    """`(model, wrapped)`: `model` with LoRA adapters when ``cfg.lora_r > 0``, else `model`
    itself (full fine-tuning). LoRA asked for without peft installed is an ImportError
    naming the ``lora`` extra, never a silent fall back to full fine-tuning."""
    if cfg.lora_r <= 0:
        return model, False
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ImportError("lora_r > 0 needs peft: pip install 'ecomrlve[lora]'") from None
    lc = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                    target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    return get_peft_model(model, lc), True


def dapo_update(model, optimizer, trajectories: Sequence[Trajectory], cfg: DAPOConfig, pad_id: int,
                device="cpu") -> dict[str, Any]:
    """One DAPO optimizer step on `trajectories` (already filtered by `filter_groups`).
    Returns statistics; no step is taken when there are no policy tokens."""
    import torch

    rewards = [t.reward for t in trajectories]
    advs = group_advantages(rewards, [t.group for t in trajectories], cfg.std, cfg.adv_eps)
    rows = [(ids, mask, old, a) for t, a in zip(trajectories, advs) for ids, mask, old in t.segments if sum(mask)]
    n_tok = sum(sum(r[1]) for r in rows)
    stats: dict[str, Any] = {"trajectories": len(trajectories), "sequences": len(rows), "policy_tokens": n_tok,
                             "tokens": sum(len(r[0]) for r in rows), "stepped": False,
                             "reward_mean": sum(rewards) / len(rewards) if rewards else 0.0,
                             "adv_abs_mean": sum(abs(a) for a in advs) / len(advs) if advs else 0.0}
    if not rows or n_tok == 0:
        return stats
    amp = _autocast(cfg.autocast, device)
    model.train()
    agg: dict[str, float] = defaultdict(float)
    total_loss = 0.0
    for _ in range(max(1, cfg.epochs)):
        optimizer.zero_grad(set_to_none=True)
        for mb in _micro_batches(rows, cfg.micro_batch_tokens):
            ids, attn, mask, old, adv = make_batch(mb, pad_id, device)
            with amp():
                logp = token_logprobs(model, ids, attn, cfg.temperature, mask)
            loss, st = dapo_loss(logp, old, adv, mask, cfg.eps_low, cfg.eps_high, num_tokens=n_tok)
            loss.backward()
            total_loss += float(loss.detach())
            w = float(mask.sum()) / n_tok
            for k, v in st.items():
                agg[k] += v * w
        params = [p for p in model.parameters() if p.requires_grad]
        gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
    model.eval()
    stats.update({k: v / max(1, cfg.epochs) for k, v in agg.items()})
    stats.update({"loss": total_loss / max(1, cfg.epochs), "grad_norm": float(gnorm), "stepped": True})
    return stats


def _autocast(dtype: str, device):
    """A context factory: ``torch.autocast`` on `device`'s type in `dtype`, or a no-op for ""."""
    import contextlib

    import torch

    if not dtype:
        return contextlib.nullcontext
    if dtype not in ("bfloat16", "float16"):
        raise ValueError(f"autocast must be '', 'bfloat16' or 'float16', got {dtype!r}")
    kind = torch.device(device).type
    return lambda: torch.autocast(kind, dtype=getattr(torch, dtype))


def sft_loss(model, ids, attn, mask):
    """Token-level cross-entropy over the masked (agent) tokens; returns (loss, n_tokens)."""
    logp = token_logprobs(model, ids, attn, 1.0, mask)
    n = mask.sum().clamp(min=1.0)
    return -(logp * mask).sum() / n, float(mask.sum())
