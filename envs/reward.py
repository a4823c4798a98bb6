"""Reward (DESIGN.md §7): r_total = clip(0.75 r_task + 0.15 r_eff + 0.10 r_hall, -1, 1).

`r_task` comes from each environment's verifier; this module owns the parts every
environment shares: efficiency from turns, hallucination from ids and claims, the total.

Hallucination (computed by `ShopEnv._hallucination`):

    r_hall = -min(1, H / max(1, N) + (F + U) / 2)

H = distinct ids the agent used (in an answer field or a write tool's id arguments) that no
tool output or shopper message had shown it; N = distinct ids it used; F = false claims in
its text (prices, stock, order status: `envs.claims`); U = answers not grounded in retrieved
facts (`ShopEnv.ungrounded`). Only bad things enter the numerator and only ids the agent acted
on enter the denominator, so no true sentence can move r_hall: padding a message with true
statements changes nothing, and an honest agent (no unseen id, no false claim) scores 0.
Example: an E_PD answer of 4 ids, 1 never shown, with one false price claim and 150 true
"X is in stock." sentences: r_hall = -min(1, 1/4 + 1/2) = -0.75, the same as without the 150
sentences (under the old shared denominator, bad / (ids + claims), the padding moved it from
-2/5 to -2/155). Sentences the checker cannot read unambiguously are not scored either way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction

W_TASK, W_EFF, W_HALL = 0.75, 0.15, 0.10


def clip(x: float, lo: float = -1.0, hi: float = 1.0) -> float:
    return max(lo, min(hi, x))


def efficiency(t_eff: int, t_max: int) -> float:
    """r_eff = 1 - 2 (T_eff - 1) / (T_max - 1), clipped to [-1, 1]; T_eff >= 1."""
    t_eff = max(1, t_eff)
    if t_max <= 1:
        return 1.0 if t_eff <= 1 else -1.0
    return clip(1.0 - 2.0 * (t_eff - 1) / (t_max - 1))


def f1_score(n_true_positive: int, n_predicted: int, n_gold: int) -> Fraction:
    """F1 as an exact fraction (2 TP / (|pred| + |gold|)); 1 when both are empty."""
    if n_predicted + n_gold == 0:
        return Fraction(1)
    return Fraction(2 * n_true_positive, n_predicted + n_gold)


@dataclass(frozen=True)
class TaskScore:
    """An environment verifier's verdict."""

    r_task: float
    is_correct: bool
    details: dict


@dataclass(frozen=True)
class RewardBreakdown:
    r_task: float
    r_eff: float
    r_hall: float
    r_total: float
    is_correct: bool
    termination_reason: str
    details: dict

    def as_dict(self) -> dict:
        return asdict(self)


def total_reward(r_task: float, r_eff: float, r_hall: float) -> float:
    return clip(W_TASK * r_task + W_EFF * r_eff + W_HALL * r_hall)


def combine(task: TaskScore, r_eff: float, r_hall: float, reason: str) -> RewardBreakdown:
    return RewardBreakdown(
        r_task=float(task.r_task),
        r_eff=float(r_eff),
        r_hall=float(r_hall),
        r_total=total_reward(task.r_task, r_eff, r_hall),
        is_correct=bool(task.is_correct),
        termination_reason=reason,
        details=task.details,
    )


def invalid(reason: str) -> RewardBreakdown:
    """An invalid action: r_total = -1 whatever else happened."""
    return RewardBreakdown(-1.0, 0.0, 0.0, -1.0, False, f"invalid_action: {reason}", {})
